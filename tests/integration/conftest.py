"""Integration tier: a real Ray cluster (the session's `ray_head`: token auth, dashboard on loopback,
stopped by PID; tests/conftest.py), with SeaweedFS and real trainings, the CLI as a process."""
