"""Checkpoints, snapshots, zoo manifests and seeds are untrusted input (issue 14, "Hardening").

Every hostile file here is built by the test itself, with a valid checksum where the format has one,
so the defect is in what the file *says*, not in a broken byte. Each is refused (or ignored, for a
snapshot, which is a cache) with one line naming the problem, through the CLI or the Python API.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import robbench
from robbench import resume, zoo
from robbench.checkpoint import FORMAT, atomic_save_tensors, payload_hash, read_tensors
from robbench.cli import app
from robbench.errors import RobbenchError
from robbench.store import ResultsStore
from robbench.train import train_agent

runner = CliRunner()
AGENT = "hopper/ppo/smoke/0"


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_one_line_error(result, expected: str) -> None:
    """Exit 2, nothing on stdout, exactly `error: <expected>` on stderr, no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    assert lines(result.stderr) == [f"error: {expected}"], result.stderr
    assert "Traceback" not in result.output


@pytest.fixture()
def home(smoke_home, tmp_path) -> Path:
    """A private copy of the session's smoke home (one agent, hopper/ppo/smoke/0)."""
    dst = tmp_path / "home"
    shutil.copytree(smoke_home, dst)
    return dst


def good_checkpoint(home: Path) -> tuple[dict[str, torch.Tensor], dict]:
    with ResultsStore(home) as store:
        return read_tensors(store.get_agent(AGENT).path)


def write_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta) -> Path:
    """A safetensors agent file with a valid payload checksum; `meta` need not be a dict."""
    if isinstance(meta, dict):
        atomic_save_tensors(path, tensors, {**meta, "format": FORMAT})
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        save_file(tensors, str(path), metadata={"format": FORMAT, "robbench": json.dumps(meta),
                                                 "payload_sha256": payload_hash(tensors)})
    return path


def register(home: Path, agent_id: str, tensors: dict[str, torch.Tensor], file_meta) -> Path:
    """Register a crafted checkpoint under `agent_id` (the database row is sane, the file is not)."""
    with ResultsStore(home) as store:
        good = store.get_agent(AGENT)
        env, method, budget, seed = agent_id.split("/")
        path = store.agent_path(env, method, budget, int(seed))
        write_checkpoint(path, tensors, file_meta)
        store.register_agent({**good.meta, "agent_id": agent_id, "env": env, "seed": int(seed)}, path)
    return path


def not_an_agent(path: Path, reason: str) -> str:
    return f"checkpoint {str(path)!r} does not hold a valid agent ({reason})"


# ------------------------------------------------------- 1. metadata checked before allocating
def test_checkpoint_dimensions_are_checked_before_any_network_is_built(home, tmp_path, monkeypatch):
    """obs_dim = 4 000 000 with hidden = [256, 256] would make the loader build ~12 GB of networks
    for a 43 KB file; it must be refused from the metadata alone (no layer is ever created)."""
    import robbench.policy

    def no_network(*args, **kwargs):
        raise AssertionError("a network was built before the checkpoint's metadata was checked")

    tensors, meta = good_checkpoint(home)
    monkeypatch.setattr(robbench.policy, "mlp", no_network)

    huge_obs = write_checkpoint(tmp_path / "huge_obs.safetensors", tensors,
                                {**meta, "obs_dim": 4_000_000, "hidden": [256, 256]})
    with pytest.raises(RobbenchError) as exc:
        robbench.load_agent(str(huge_obs))
    assert str(exc.value) == not_an_agent(
        huge_obs, "metadata obs_dim 4000000 does not match env 'hopper', whose observations have 11 dimensions")

    huge_act = write_checkpoint(tmp_path / "huge_act.safetensors", tensors, {**meta, "act_dim": 10**12})
    with pytest.raises(RobbenchError) as exc:
        robbench.load_agent(str(huge_act))
    assert str(exc.value) == not_an_agent(
        huge_act, "metadata act_dim 1000000000000 does not match env 'hopper', whose actions have 3 dimensions")

    # dimensions that match the env, but hidden sizes the tensors do not have
    wide = write_checkpoint(tmp_path / "wide.safetensors", tensors, {**meta, "hidden": [4_000_000, 256]})
    with pytest.raises(RobbenchError) as exc:
        robbench.load_agent(str(wide))
    assert str(exc.value) == not_an_agent(
        wide, "tensor 'policy.mean_net.0.bias' has shape (64,), but obs_dim 11, act_dim 3 and hidden "
              "[4000000, 256] imply (4000000,)")


# ------------------------------------------------------------- 2. hostile checkpoint content
def _nan_weight(tensors):
    w = tensors["policy.mean_net.0.weight"].clone()
    w[3, 2] = float("nan")
    return {**tensors, "policy.mean_net.0.weight": w}


HOSTILE = {
    # name: (tensors -> tensors, meta -> meta, reason in the error; None: the file is "corrupt")
    "extra tensor in the policy": (lambda t: {**t, "policy.backdoor": torch.zeros(4)}, lambda m: m,
                                   "unexpected tensor 'policy.backdoor' (an agent holds policy.*, value.*, "
                                   "obs_filter.* and extra.<module>.<key> tensors)"),
    "stray tensor": (lambda t: {**t, "payload.x": torch.zeros(4)}, lambda m: m,
                     "unexpected tensor 'payload.x' (an agent holds policy.*, value.*, obs_filter.* and "
                     "extra.<module>.<key> tensors)"),
    "extra tensor without a module": (lambda t: {**t, "extra.q": torch.zeros(4)}, lambda m: m,
                                      "unexpected tensor 'extra.q' (an agent holds policy.*, value.*, "
                                      "obs_filter.* and extra.<module>.<key> tensors)"),
    "missing tensor": (lambda t: {k: v for k, v in t.items() if k != "value.net.4.bias"}, lambda m: m,
                       "tensor 'value.net.4.bias' is missing"),
    "nested hidden": (lambda t: t, lambda m: {**m, "hidden": [[64], [64]]},
                      "metadata 'hidden' must be a list of positive integers, got [[64], [64]]"),
    "hidden as a string": (lambda t: t, lambda m: {**m, "hidden": "64,64"},
                           "metadata 'hidden' must be a list of positive integers, got '64,64'"),
    "obs_dim a string": (lambda t: t, lambda m: {**m, "obs_dim": "x"},
                         "metadata 'obs_dim' must be a positive integer, got 'x'"),
    "act_dim a boolean": (lambda t: t, lambda m: {**m, "act_dim": True},
                          "metadata 'act_dim' must be a positive integer, got True"),
    "config not a table": (lambda t: t, lambda m: {**m, "config": ["gamma", 0.99]},
                           "metadata 'config' must be a JSON object, got ['gamma', 0.99]"),
    "wrong filter shape": (lambda t: {**t, "obs_filter.mean": torch.zeros(5, dtype=torch.float64)}, lambda m: m,
                           "tensor 'obs_filter.mean' has shape (5,), but obs_dim 11, act_dim 3 and hidden "
                           "[64, 64] imply (11,)"),
    "negative filter count": (lambda t: {**t, "obs_filter.n": torch.tensor(-5)}, lambda m: m,
                              "tensor 'obs_filter.n' must be an integer count ≥ 0, got -5 (torch.int64)"),
    "integer weights": (lambda t: {**t, "policy.log_std": torch.zeros(3, dtype=torch.int32)}, lambda m: m,
                        "tensor 'policy.log_std' has dtype torch.int32, expected a floating-point type"),
    "NaN weight": (_nan_weight, lambda m: m, "tensor 'policy.mean_net.0.weight' holds NaN or infinite values"),
    "infinite filter mean": (lambda t: {**t, "obs_filter.mean": torch.full((11,), float("inf"), dtype=torch.float64)},
                             lambda m: m, "tensor 'obs_filter.mean' holds NaN or infinite values"),
    "metadata not an object": (lambda t: t, lambda m: [m["env"], m["obs_dim"]], None),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_checkpoint_is_one_line_in_the_api_the_store_and_certify(home, case):
    change_tensors, change_meta, reason = HOSTILE[case]
    tensors, meta = good_checkpoint(home)
    aid = "hopper/ppo/smoke/7"
    path = register(home, aid, change_tensors(tensors), change_meta(meta))
    expected = (not_an_agent(path, reason) if reason is not None else
                f"checkpoint {str(path)!r} is corrupt (its metadata is a JSON list, not an object)")

    with pytest.raises(RobbenchError) as exc:  # robbench.load_agent(<path>)
        robbench.load_agent(str(path))
    assert str(exc.value) == expected
    with ResultsStore(home) as store, pytest.raises(RobbenchError) as exc:  # the store's loader
        store.load_agent(aid)
    assert str(exc.value) == expected
    # certify runs as a job (one per agent): the failure is that job's one `✗` line, exit 1
    result = cli("certify", "--agents", aid, "--method", "ibp", "--states", 8, "--home", home)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"✗ certify {aid}: {expected}" in result.output.splitlines(), result.output


def test_nan_weights_fail_evaluate_with_a_clear_line_not_an_io_error(home):
    """Today a NaN weight runs, returns NaN and is reported as 'I/O error ... NOT NULL constraint
    failed' when the cell is written; it must be refused when the checkpoint is loaded."""
    tensors, meta = good_checkpoint(home)
    aid = "hopper/ppo/smoke/8"
    path = register(home, aid, _nan_weight(tensors), meta)
    result = cli("evaluate", "--agents", f"{aid},{AGENT}", "--attacks", "none", "--episodes", 2, "--workers", 1,
                 "--home", home)
    assert result.exit_code == 1, result.output
    err = lines(result.stderr)
    reason = not_an_agent(path, "tensor 'policy.mean_net.0.weight' holds NaN or infinite values")
    assert [line for line in err if line.startswith("✗ ")] == [f"✗ evaluate {aid} × none: {reason}"], result.stderr
    assert any(line.startswith(f"✓ evaluate {AGENT} × none: ") for line in err), result.stderr
    assert "NOT NULL" not in result.output and "I/O error" not in result.output
    assert "Traceback" not in result.output


# ---------------------------------------------------------------- 3. snapshots missing state
class Killed(Exception):
    pass


def _kill_after(iteration: int):
    def progress(i, stats):
        if i == iteration:
            raise Killed

    return progress


SNAPSHOT = Path("partial/train/hopper/ppo/smoke/seed1.safetensors")


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    """(tensors, meta) of a real mid-run snapshot of `ppo hopper --preset smoke --seed 1` (iteration 1)."""
    home = tmp_path_factory.mktemp("snap")
    mp = pytest.MonkeyPatch()
    mp.setenv("ROBBENCH_SNAPSHOT_S", "0")
    try:
        with ResultsStore(home) as store, pytest.raises(Killed):
            train_agent(store, "ppo", "hopper", seed=1, preset="smoke", progress=_kill_after(1))
    finally:
        mp.undo()
    return read_tensors(home / SNAPSHOT, expected_format=resume.FORMAT)


def _drop_gen(tensors, meta):
    state = meta["state"]["__dict__"]
    name = state.pop("gen")["__tensor__"]
    return {k: v for k, v in tensors.items() if k != name}, meta


def _drop_state(tensors, meta):
    return tensors, {k: v for k, v in meta.items() if k != "state"}


def _dangling(tensors, meta):
    name = meta["state"]["__dict__"]["torch_rng"]["__tensor__"]
    return {k: v for k, v in tensors.items() if k != name}, meta


def _reshaped(tensors, meta):
    return {**tensors, "s.policy.mean_net.0.weight": torch.zeros(64, 5)}, meta


def _wrong_type(tensors, meta):
    meta["state"]["__dict__"]["iteration"] = "one"
    return tensors, meta


BROKEN_SNAPSHOTS = {
    "no gen": (_drop_gen, "state.gen is missing"),
    "no state": (_drop_state, "it lacks 'state'"),
    "tensor missing from the payload": (_dangling, "it lacks 's.torch_rng'"),
    "reshaped policy weight": (_reshaped, "state.policy.mean_net.0.weight has shape (64, 5), expected (64, 11)"),
    "iteration a string": (_wrong_type, "state.iteration is 'one', expected an integer"),
}


@pytest.mark.parametrize("case", list(BROKEN_SNAPSHOTS))
def test_snapshot_with_valid_checksum_but_missing_state_is_ignored(tmp_path, snapshot, monkeypatch, case):
    """The snapshot is a cache: one that cannot be restored is ignored with a warning, the agent is
    trained from the start, and the next run does not trip over it again."""
    monkeypatch.setenv("ROBBENCH_SNAPSHOT_S", "0")
    breaker, problem = BROKEN_SNAPSHOTS[case]
    tensors, meta = breaker(dict(snapshot[0]), json.loads(json.dumps(snapshot[1])))
    home = tmp_path / "home"
    snap = home / SNAPSHOT
    atomic_save_tensors(snap, tensors, meta)  # a valid checksum over what is there
    read_tensors(snap, expected_format=resume.FORMAT)

    result = cli("train", "ppo", "hopper", "--preset", "smoke", "--seed", 1, "--workers", 1, "--home", home)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "Error" not in result.output
    warnings = [line for line in lines(result.stderr) if line.startswith("warning: ")]
    assert len(warnings) == 1, result.stderr
    assert warnings == [f"warning: hopper/ppo/smoke/1: unusable snapshot {str(snap)!r} ignored ({problem}); "
                        "trained from the start"], result.stderr
    assert "hopper/ppo/smoke/1: trained — 4096 steps" in result.stderr
    with ResultsStore(home) as store:
        rec = store.get_agent("hopper/ppo/smoke/1")
        assert rec.meta["provenance"]["resumed_from_iteration"] is None
        store.load_agent("hopper/ppo/smoke/1")
    assert not snap.exists()  # cleared once the agent is stored
    again = cli("train", "ppo", "hopper", "--preset", "smoke", "--seed", 1, "--workers", 1, "--home", home)
    assert again.exit_code == 0 and "exists" in again.stderr and "warning" not in again.stderr, again.output


# ------------------------------------------------------------------ 4. damaged stored agents
def _truncate(path: Path) -> str:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return "is corrupt or truncated"


def _flip(path: Path) -> str:
    data = bytearray(path.read_bytes())
    data[-7] ^= 0x10  # inside the tensor payload
    path.write_bytes(bytes(data))
    return "is corrupt (tensor checksum mismatch)"


def _resave(path: Path) -> str:
    tensors, meta = read_tensors(path)
    atomic_save_tensors(path, tensors, {**meta, "note": "edited"})  # valid, but not the registered file
    return "changed since training (sha256 mismatch)"


@pytest.mark.parametrize("damage", [_truncate, _flip, _resave], ids=["truncated", "flipped byte", "replaced"])
def test_train_retrains_a_damaged_stored_agent_instead_of_saying_it_exists(home, damage):
    with ResultsStore(home) as store:
        path = store.get_agent(AGENT).path
    what = damage(path)
    result = cli("train", "ppo", "hopper", "--preset", "smoke", "--seed", 0, "--workers", 1, "--home", home)
    assert result.exit_code == 0, result.output
    assert "exists" not in result.output and "Traceback" not in result.output
    assert f"{AGENT}: retrained — 4096 steps" in result.stderr
    warnings = [line for line in lines(result.stderr) if line.startswith("warning: ")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {AGENT}: the stored agent was unusable ("), \
        result.stderr
    assert what in warnings[0] and warnings[0].endswith("); retrained it"), warnings[0]
    with ResultsStore(home) as store:
        store.load_agent(AGENT)  # sound again, and registered with its new hash
    again = cli("train", "ppo", "hopper", "--preset", "smoke", "--seed", 0, "--workers", 1, "--home", home)
    assert again.exit_code == 0 and "exists (use --force to retrain)" in again.stderr, again.output


# ------------------------------------------------------------------------- 5. zoo manifests
@pytest.fixture()
def tiny_zoo(tmp_path) -> tuple[Path, dict]:
    """A zoo of one agent (a copy of the shipped zoo's first entry and checkpoint)."""
    if not (zoo.ZOO_DIR / "manifest.json").is_file():
        pytest.skip("no zoo in this checkout")
    entry = json.loads(json.dumps(zoo.manifest()["agents"][0]))
    d = tmp_path / "zoo"
    (d / entry["file"]).parent.mkdir(parents=True)
    shutil.copyfile(zoo.ZOO_DIR / entry["file"], d / entry["file"])
    return d, entry


def _write_manifest(d: Path, data) -> Path:
    (d / "manifest.json").write_text(json.dumps(data))
    return d / "manifest.json"


def _without(entry: dict, key: str) -> dict:
    return {k: v for k, v in entry.items() if k != key}


BAD_ENTRIES = {
    "no sha256": (lambda e: _without(e, "sha256"), "is missing key 'sha256'"),
    "no short_id": (lambda e: _without(e, "short_id"), "is missing key 'short_id'"),
    "no env": (lambda e: _without(e, "env"), "is missing key 'env'"),
    "seed a string": (lambda e: {**e, "seed": "zero"}, "key 'seed' must be an integer ≥ 0, got 'zero'"),
    "sha256 a number": (lambda e: {**e, "sha256": 5}, "key 'sha256' must be a string, got 5"),
    "file outside the zoo": (lambda e: {**e, "file": "../../etc/passwd"},
                             "key 'file' must be a relative path inside the zoo, got '../../etc/passwd'"),
    "worst without mean": (lambda e: {**e, "worst": {"attack": "rs"}},
                           "key 'worst' must be null or a table with a number 'mean' and a string 'attack', "
                           "got {'attack': 'rs'}"),
    "attack cell not a table": (lambda e: {**e, "attacks": {"none": 4000}},
                                "key 'attacks' must be a table: attack -> {mean: number, returns_sha256: string}, "
                                "got {'none': 4000}"),
}


@pytest.mark.parametrize("case", list(BAD_ENTRIES))
def test_zoo_manifest_entry_with_missing_or_wrong_key_is_one_line(tiny_zoo, case):
    d, entry = tiny_zoo
    change, reason = BAD_ENTRIES[case]
    manifest = _write_manifest(d, {"format": zoo.FORMAT, "agents": [entry, change(entry)]})
    expected = f"zoo manifest {str(manifest)!r}: entry 1 ({entry['agent_id']!r}) {reason}"
    for call in (lambda: zoo.load(entry["short_id"], d), lambda: zoo.manifest(d)):
        with pytest.raises(RobbenchError) as exc:
            call()
        assert str(exc.value) == expected
    with ResultsStore(d.parent / "home") as store, pytest.raises(RobbenchError) as exc:
        zoo.import_into(store, d)
    assert str(exc.value) == expected


@pytest.mark.parametrize("data, reason", [
    (["not", "a", "table"], "must be a JSON object, got a list"),
    ({"format": "robbench-zoo/1", "agents": {"a": 1}}, ": 'agents' must be a list of entries, got {'a': 1}"),
    ({"format": "robbench-zoo/1", "agents": ["hopper/ppo/0"]}, ": entry 0 must be a table, got 'hopper/ppo/0'"),
])
def test_zoo_manifest_of_the_wrong_shape_is_one_line(tiny_zoo, data, reason):
    d, entry = tiny_zoo
    manifest = _write_manifest(d, data)
    with pytest.raises(RobbenchError) as exc:
        zoo.load(entry["short_id"], d)
    sep = " " if not reason.startswith(":") else ""
    assert str(exc.value) == f"zoo manifest {str(manifest)!r}{sep}{reason}"


def test_zoo_sound_manifest_still_loads(tiny_zoo):
    d, entry = tiny_zoo
    _write_manifest(d, {"format": zoo.FORMAT, "agents": [entry]})
    assert zoo.load(entry["short_id"], d).meta["agent_id"] == entry["agent_id"]


# ------------------------------------------------------------------------------------ 6. seeds
SEED_RANGE = "seeds are integers 0 ≤ seed < 2**31 (≤ 2147483647)"


@pytest.mark.parametrize("seed", [10**23, 2**31, 2**64])
def test_out_of_range_seed_on_the_command_line_is_one_line(tmp_path, seed):
    result = cli("train", "ppo", "hopper", "--preset", "smoke", "--seed", seed, "--home", tmp_path / "h")
    assert_one_line_error(result, f"--seed: seed {seed} is out of range; {SEED_RANGE}")
    result = cli("train", "ppo", "hopper", "--preset", "smoke", "--seeds", f"0,{seed}", "--home", tmp_path / "h")
    assert_one_line_error(result, f"--seeds: seed {seed} is out of range; {SEED_RANGE}")


@pytest.mark.parametrize("name, text", [
    ("g.toml", 'envs = ["hopper"]\nmethods = ["ppo"]\npreset = "smoke"\nseeds = 100000000000000000000000\n'),
    ("g.yaml", "envs: [hopper]\nmethods: [ppo]\npreset: smoke\nseeds: [0, 100000000000000000000000]\n"),
])
def test_out_of_range_seed_in_a_grid_is_one_line(tmp_path, name, text):
    grid = tmp_path / name
    grid.write_text(text)
    result = cli("run", grid, "--workers", 1, "--home", tmp_path / "h")
    assert_one_line_error(result, f"{name}: seeds: seed 100000000000000000000000 is out of range; {SEED_RANGE}")


def test_out_of_range_seed_in_the_python_api(tmp_path):
    with ResultsStore(tmp_path / "h") as store, pytest.raises(RobbenchError) as exc:
        train_agent(store, "ppo", "hopper", seed=2**31, preset="smoke")
    assert str(exc.value) == f"--seed: seed {2**31} is out of range; {SEED_RANGE}"
