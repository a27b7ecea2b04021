"""The plan: exact counts, shared bases once, stable content-hash keys, complete settings."""
import json
from pathlib import Path

import pytest

from orchestrator.spec import load_spec, parse_spec
from orchestrator.spec.plan import PROTOCOL_VERSION, counts, make_plan, trial_key
from orchestrator.spec.replicate import reached_plan
from sweepcore.settings import TrialSettings

ROOT = Path(__file__).resolve().parents[2]


def spec_dict(**over):
    raw = {"name": "t", "dataset": "fashion-animals", "splits": ["random:0"],
           "treatments": ["base", "selffer", "transfer"], "layers": [1, 2], "directions": ["A->B", "B->A"],
           "train": {"epochs": 1}}
    raw.update(over)
    return raw


def test_counts_and_shared_bases():
    plan = make_plan(parse_spec(spec_dict()))
    c = counts(plan)
    # 2 bases + (selffer + transfer) x 2 layers x 2 targets
    assert c["total"] == 10 and c["bases"] == 2
    assert c["by_treatment"] == {"base": 2, "selffer": 4, "transfer": 4}
    keys = [t.key for t in plan.trials]
    assert len(keys) == len(set(keys))
    bases = {t.key for t in plan.bases}
    assert all(t.base_key in bases for t in plan.trials if t.treatment != "base")


def test_bases_are_implied_by_dependents():
    plan = make_plan(parse_spec(spec_dict(treatments=["transfer"], directions=["A->B"], layers=[3])))
    assert [t.name for t in plan.trials] == ["baseA random:0 s0", "AnB n=3 random:0 s0"]
    base, transfer = plan.trials
    assert transfer.base_key == base.key and transfer.source_half == "A" and transfer.target_half == "B"


def test_keys_ignore_sweep_name_and_resources_but_not_training():
    a = make_plan(parse_spec(spec_dict()))
    b = make_plan(parse_spec(spec_dict(name="other", resources={"cpus": 2})))
    c = make_plan(parse_spec(spec_dict(train={"epochs": 2})))
    assert [t.key for t in a.trials] == [t.key for t in b.trials]
    assert not set(t.key for t in a.trials) & set(t.key for t in c.trials)


def test_key_is_hash_of_settings():
    trial = make_plan(parse_spec(spec_dict())).trials[3]
    s = trial.settings.to_dict()
    assert trial_key(s) == s["key"] == trial.key and len(s["key"]) == 16
    assert s["protocol"] == PROTOCOL_VERSION
    # plain JSON: crosses process boundaries as is, and comes back as the same settings
    assert TrialSettings.from_dict(json.loads(json.dumps(s))) == trial.settings


def test_settings_from_the_wire_are_checked_field_by_field():
    s = make_plan(parse_spec(spec_dict())).trials[3].settings.to_dict()
    with pytest.raises(ValueError, match=r"settings.train: missing fields \['lr'\], unknown fields \['lr_rate'\]"):
        TrialSettings.from_dict({**s, "train": {**{k: v for k, v in s["train"].items() if k != "lr"}, "lr_rate": 1}})
    with pytest.raises(ValueError, match="settings.runtime.threads: expected int, got '1'"):
        TrialSettings.from_dict({**s, "runtime": {**s["runtime"], "threads": "1"}})
    with pytest.raises(ValueError, match="settings.key '0123456789abcdef' does not match its content"):
        TrialSettings.from_dict({**s, "key": "0123456789abcdef"})
    with pytest.raises(ValueError, match="does not match its content"):
        TrialSettings.from_dict({**s, "n": s["n"] + 1})  # a changed field changes the key


def test_settings_are_complete():
    trial = [t for t in make_plan(parse_spec(spec_dict())).trials if t.treatment == "transfer"][0]
    s = trial.settings.to_dict()
    assert s["model"] == {"arch": "small", "num_outputs": 20, "widths": [16, 32, 48, 48, 32],
                          "fc_width": 256, "dropout": 0.5, "init": "kaiming", "cut_points": None, "blocks": None,
                          "in_channels": None, "factory": None, "frozen_bn": None, "factory_sha256": None}
    assert None not in (s["train"]["batch_size"], s["train"]["lr"], s["train"]["eval_every"])
    assert s["runtime"] == {"device": "cpu", "threads": 1, "channels_last": True, "data_parallel": 1}
    assert s["frozen"] is True and s["n"] in (1, 2) and s["base_key"]


def test_model_fields_added_later_change_no_existing_key_and_old_settings_still_read():
    trial = make_plan(parse_spec(spec_dict())).trials[0]
    s = trial.settings.to_dict()
    old = {**s, "model": {k: v for k, v in s["model"].items() if k in
                          ("arch", "num_outputs", "widths", "fc_width", "dropout", "init")}}
    assert trial_key(old) == trial.key  # the key of settings written before the fields existed
    assert TrialSettings.from_dict(old) == trial.settings  # and such settings still read back
    with_bn = {**s, "model": {**s["model"], "frozen_bn": "adapt"}}
    assert trial_key(with_bn) != trial.key  # once set, a field is part of the key


def test_draws_come_from_what_the_network_is_not_from_bookkeeping():
    import dataclasses

    from sweepcore.settings import rng_root
    trial = make_plan(parse_spec(spec_dict())).trials[-1].settings
    assert trial.rng_root == rng_root(trial.to_dict()) and len(trial.rng_root) == 16
    bumped = dataclasses.replace(trial, protocol=trial.protocol + 1, sweep="other", name="x",
                                 base_key="0" * 16).with_key()
    assert bumped.key != trial.key and bumped.rng_root == trial.rng_root  # bookkeeping: the same draws
    for change in ({"seed": trial.seed + 1}, {"n": trial.n + 1}, {"data": "f" * 16},
                   {"train": dataclasses.replace(trial.train, lr=trial.train.lr * 2)}):
        changed = dataclasses.replace(trial, **change).with_key()
        assert changed.key != trial.key and changed.rng_root != trial.rng_root, change
    wire = trial.to_dict()
    with pytest.raises(ValueError, match="settings.rng_root '0000000000000000' does not match its content"):
        TrialSettings.from_dict({**wire, "rng_root": "0" * 16})
    with pytest.raises(ValueError, match="settings.rng_root None does not match"):
        TrialSettings.from_dict({**wire, "rng_root": None})  # protocol 3 settings always carry it


def test_random_and_all_split():
    raw = spec_dict(splits=[{"split": "all", "treatments": ["base", "random"]}])
    plan = make_plan(parse_spec(raw))
    assert [t.name for t in plan.trials] == ["base all s0", "random n=1 all s0", "random n=2 all s0"]
    assert all(t.base_key is None for t in plan.trials)


def test_seeds_replicate_everything():
    one = make_plan(parse_spec(spec_dict()))
    three = make_plan(parse_spec(spec_dict(seeds=[0, 1, 2])))
    assert len(three) == 3 * len(one)


def test_standard_preset_counts():
    c = counts(make_plan(load_spec(ROOT / "sweeps" / "standard.yaml")))
    assert c == {"sweep": "standard", "total": 288, "bases": 15,
                 "by_treatment": {"base": 15, "selffer": 84, "selffer+": 42, "transfer": 84,
                                  "transfer+": 42, "random": 21},
                 "by_split": {"all": 24, "natman": 90, "random:0": 174},
                 "by_n": {str(n): 39 for n in range(1, 8)}}


PUBLISHED = sorted(p.name for p in (ROOT / "docs" / "results").iterdir() if (p / "results.parquet").exists())


def test_every_published_study_has_its_spec_file():
    assert PUBLISHED == ["converged", "converged-anb", "dip", "resnet-converged", "resnet-converged-anb", "standard"]
    assert all((ROOT / "sweeps" / f"{study}.yaml").exists() for study in PUBLISHED)


@pytest.mark.parametrize("study", PUBLISHED)
def test_published_rows_are_exactly_what_the_spec_file_plans_or_marked_stale(study):
    """`transfer-sweep run sweeps/<study>.yaml`, with no other argument, reproduces the published keys (a
    folder's own spec.yaml, where it publishes part of the study: `run docs/results/<study>/spec.yaml`);
    a folder not yet republished under the current protocol says so at the top of its report."""
    import pyarrow.parquet as pq
    rows = pq.read_table(ROOT / "docs" / "results" / study / "results.parquet", columns=["key", "protocol"])
    published, protocols = rows.column("key").to_pylist(), set(rows.column("protocol").to_pylist())
    assert len(published) == len(set(published)), "a published key has two rows"
    if protocols == {PROTOCOL_VERSION}:
        # a replicating study publishes the round its rows reach (the spec's own plan without replicate)
        full = set(reached_plan(load_spec(ROOT / "sweeps" / f"{study}.yaml"), published).by_key())
        # a folder that publishes part of its study (one split of two) carries the spec it ran
        own = ROOT / "docs" / "results" / study / "spec.yaml"
        planned = [t.key for t in make_plan(load_spec(own)).trials] if own.exists() else sorted(full)
        assert study != "dip" or len(planned) == 144  # one round: claim 2 was decided after it
        assert len(published) == len(planned)
        assert set(published) == set(planned) <= full
    else:
        assert max(protocols) < PROTOCOL_VERSION, f"{study} mixes protocols {sorted(protocols)}"
        report = (ROOT / "docs" / "results" / study / "report.md").read_text()
        assert "> **Stale**: " in report.split("\n## ")[0], f"{study}: rows of protocol {sorted(protocols)} " \
            "and no stale banner at the top of report.md"
