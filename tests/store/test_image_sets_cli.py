"""Image sets through `plan` as a process: a folder of one class and a missing factory are one line, exit 2."""
from __future__ import annotations

from image_set_specs import image_spec, plan_cli
from image_trees import write_tree


def test_plan_of_a_folder_with_one_class_exits_2_with_one_line(tmp_path):
    proc = plan_cli(tmp_path, image_spec(write_tree(tmp_path / "t", classes=("cats",))))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (f"transfer-sweep: error: images.src {tmp_path / 't'}: a study needs at least 2 "
                                   "classes, found 1 (cats); expected one folder per class: <class>/<image>")
    proc = plan_cli(tmp_path, {k: v for k, v in image_spec(tmp_path / "t").items() if k != "images"})
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "dataset folder needs an images section" in proc.stderr


# --- preparation and halves --------------------------------------------------------------------------


def test_plan_of_a_missing_factory_exits_2_with_one_line(tmp_path):
    raw = image_spec(write_tree(tmp_path / "t"), model={"factory": "no_such_models:resnet"})
    proc = plan_cli(tmp_path, raw)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"transfer-sweep: error: {tmp_path / 'spec.yaml'}: "
                                  "model.factory no_such_models:resnet: ")
    assert "no_such_models" in proc.stderr.split("resnet: ", 1)[1]
