"""What the results say: intervals and tests (stats, verdicts), the convergence check, the paper's
claims and numbers, the report and the comparison of two studies. Pure: it reads data frames and
writes output files, never the store or the command line."""
from orchestrator.analysis.claims import Claim, check_claims
from orchestrator.analysis.convergence import check_convergence
from orchestrator.analysis.report import write_report, write_tables

__all__ = ["Claim", "check_claims", "check_convergence", "write_report", "write_tables"]
