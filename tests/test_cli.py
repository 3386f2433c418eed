"""The fastmask command line: --version, --help without JIT, the demo."""
from __future__ import annotations

import subprocess
import sys

from fastmask import __version__
from fastmask.cli import main


def test_version_and_help_do_not_load_numba():
    code = (
        "import sys, contextlib, io\n"
        "from fastmask.cli import main\n"
        "for args in (['--help'], ['--version']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "        try:\n"
        "            main(args)\n"
        "        except SystemExit as e:\n"
        "            assert e.code == 0, e.code\n"
        "    print(out.getvalue())\n"
        "print('numba loaded:', 'numba' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "numba loaded: False" in res.stdout
    assert f"fastmask {__version__}" in res.stdout
    assert "demo" in res.stdout  # the subcommand is listed in --help


def test_console_script_version():
    res = subprocess.run([sys.executable, "-m", "fastmask", "--version"], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == f"fastmask {__version__}"


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage: fastmask" in capsys.readouterr().out


def test_coco_rle_demo_runs_and_checks_round_trips(capsys):
    assert main(["demo", "--coco-rle", "--images", "6", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "generated 6 COCO-like images" in out
    assert "round-trip exactly" in out
    assert "IoU 0.3913" in out


def test_validation_demo_finds_every_planted_defect_and_nothing_else(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--workers", "1"]) == 0
    text = capsys.readouterr().out
    from fastmask.jobs.validate_rules import RULES

    # every rule is planted once, except the platform preflight rules (they need Labelbox / Nucleus
    # files: tests/test_platforms.py has one test each)
    n = sum(1 for spec in RULES.values() if spec.scope != "preflight")
    assert f"planted defects found: {n} of {n}; findings on clean items: 0" in text
    assert (out / "report-voc" / "run.json").exists()
    # a rerun replaces its own folder; a foreign non-empty folder is refused
    assert main(["demo", "--out", str(out), "--workers", "1"]) == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["demo", "--out", str(other)]) == 2
    assert (other / "keep.txt").exists()


def test_dataset_options_are_recorded_for_the_report(tmp_path):
    import json

    import numpy as np
    from PIL import Image

    from fastmask.formats import write_mask
    from fastmask.report import _Reader

    (tmp_path / "masks").mkdir()
    (tmp_path / "images").mkdir()
    write_mask(tmp_path / "masks" / "a.png", np.ones((4, 6), np.uint8))
    Image.new("RGB", (6, 4)).save(tmp_path / "images" / "a.jpg")
    out = tmp_path / "r"
    assert main(["coverage", str(tmp_path / "masks"), "--images", str(tmp_path / "images"), "--out", str(out),
                 "--workers", "1", "--quiet"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["arguments"]["images"] == str(tmp_path / "images")
    assert "masks" not in run["arguments"] and "labelmap_file" not in run["arguments"]  # not given: not recorded
    assert _Reader(out, run, None).images == str(tmp_path / "images")  # the report reopens the run's images
    assert _Reader(out, run, "/elsewhere").images == "/elsewhere"


def test_evaluate_flags_for_partial_answers(capsys):
    import pytest

    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--out-of-range {fn,ignore,error}" in text and "--allow-missing" in text
    assert "a false negative of that class and nothing else" in text
    with pytest.raises(SystemExit) as e:  # the policy names are a contract: no others
        main(["evaluate", "--gt", "g", "--pred", "p", "--out-of-range", "count", "--out", "r"])
    assert e.value.code == 2 and "invalid choice: 'count'" in capsys.readouterr().err
