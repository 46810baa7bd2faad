"""The built wheel works in a fresh venv and puts nothing generic at the top of site-packages."""

import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_in_fresh_venv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    (wheel,) = dist.glob("robbench-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
        check=True, capture_output=True,
    )
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    top = {p.name for p in site.iterdir()}
    assert "robbench" in top
    assert not {"agents", "attacks", "tests", "reports"} & top, top
    installed = sorted(p.name for p in (site / "robbench").iterdir())
    assert {"agents", "attacks"} <= set(installed)
    assert (site / "robbench" / "data" / "paper_results.csv").is_file()  # --compare-paper works anywhere
    for name in ("board.html.j2", "board.css", "board.js"):  # the HTML page renders from an install
        assert (site / "robbench" / "report" / "templates" / name).is_file(), name
    # Dependencies (torch, gymnasium, ...) come from the current environment, after the venv's own.
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    probe = (
        "import robbench, robbench.agents, robbench.attacks; from robbench.registry import trainers, attacks; "
        "assert 'ppo' in trainers() and {'none', 'random'} <= set(attacks()); "
        "from robbench.report import to_html; assert '<style>' in to_html([]); print(robbench.__file__)"
    )
    out = subprocess.run([str(py), "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.strip().startswith(str(site)), out.stdout
    cli = subprocess.run([str(venv / "bin" / "robbench"), "list", "attacks"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert "random" in cli.stdout
    # the zoo ships in the wheel and loads in one line from the installed package, hash-checked
    manifest = site / "robbench" / "zoo" / "manifest.json"
    if (Path(__file__).resolve().parent.parent / "robbench" / "zoo" / "manifest.json").is_file():
        assert manifest.is_file()
        load = subprocess.run([str(py), "-c", "import robbench; print(robbench.load_agent('hopper/ppo/0').meta['agent_id'])"],
                              capture_output=True, text=True, cwd=tmp_path)
        assert load.returncode == 0 and load.stdout.strip() == "hopper/ppo/paper/0", load.stderr
