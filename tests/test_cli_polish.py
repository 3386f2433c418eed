"""Command-line polish: refused resumes name what changed, help texts, usage errors, plurals, first-run notices."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastmask.cli import main
from fastmask.formats import write_mask


@pytest.fixture
def mask_folder(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(3):
        m = np.zeros((8, 8), np.uint8)
        m[: i + 2, : i + 2] = 1
        write_mask(masks / f"m{i}.png", m)
    return masks


def test_refused_resume_names_each_changed_argument_once(mask_folder, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["validate", str(mask_folder), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["validate", str(mask_folder), "--out", str(out), "--workers", "1", "--quiet", "--resume",
                 "--min-island", "3", "--connectivity", "4"]) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "cannot resume" in lines[0]
    changed = [ln.strip() for ln in lines[1:] if ln.startswith("  ")]
    # exactly the two changed flags, old and new values, each once (the job's and the run's
    # argument records both hold them)
    assert sorted(changed) == ["config.connectivity: was 8, now 4", "config.min_island: was 16, now 3"], err
    assert "--overwrite" in lines[-1]


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_every_command_has_a_description(capsys):
    from fastmask.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    names = {"scan", "validate", "coverage", "evaluate", "demo", "rasterize", "convert", "instances", "report"}
    assert names <= set(commands)
    for name, parser in commands.items():
        assert parser.description and len(parser.description) > 40, name
        text = " ".join(_help(capsys, name).split())
        # the description is printed between the usage and the arguments
        assert " ".join(parser.description.split()) in text, name


@pytest.mark.parametrize("argv,unknown", [
    (["validate", "DS", "--out", "r", "--min-islnd", "3"], "--min-islnd 3"),
    (["coverage", "DS", "--out", "r", "--bogus"], "--bogus"),
    (["rasterize", "a.json", "--out", "r", "--layout", "coco"], "--layout coco"),  # not an option of rasterize
    (["evaluate", "--gt", "g", "--pred", "p", "--out", "r", "extra"], "extra"),
])
def test_a_mistyped_flag_shows_the_commands_own_usage(capsys, argv, unknown):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.startswith(f"usage: fastmask {argv[0]} "), err
    assert err.endswith(f"fastmask {argv[0]}: error: unrecognized arguments: {unknown}\n"), err


def test_a_mistyped_top_level_flag_keeps_the_top_level_usage(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--bogus"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("usage: fastmask [-h]") and "unrecognized arguments: --bogus" in err


def test_rasterize_help_describes_only_what_it_accepts(capsys):
    text = " ".join(_help(capsys, "rasterize").split())
    assert "DATASET a COCO instances JSON" in text
    for other in ("mask folder", "VOC/CVAT folder", "clean-zip", "Labelbox", "Nucleus",
                  "--layout", "--masks", "--labelbox-label", "--images"):
        assert other not in text, other
    assert "--labelmap" in text


def test_plots_hint_names_an_install_from_a_checkout(monkeypatch, mask_folder, tmp_path, capsys):
    from fastmask import plots

    monkeypatch.setattr(plots, "matplotlib_available", lambda: False)
    assert main(["validate", str(mask_folder), "--out", str(tmp_path / "r"), "--plots", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'fastmask-seg[plots]'" in err and "pip install -e '.[plots]'" in err
    assert not (tmp_path / "r").exists()  # refused before the run


def test_validate_plots_writes_the_validate_charts(mask_folder, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from fastmask import plots

    out = tmp_path / "r"
    assert main(["validate", str(mask_folder), "--out", str(out), "--plots", "--workers", "1", "--quiet"]) == 0
    expected = sorted(c.name for c in plots.charts_for_run(out))
    assert expected == ["class_frequency", "findings"] or expected == ["class_frequency"]
    assert sorted(p.stem for p in (out / "plots").glob("*.png")) == expected
    assert "plots: " in capsys.readouterr().out


def test_counted_nouns_are_singular_for_one(tmp_path, capsys):
    import pyarrow.parquet as pq

    masks = tmp_path / "one"
    masks.mkdir()
    m = np.zeros((80, 80), np.uint8)  # large enough for tiny_island to look (>= 256 * 16 px)
    m[5:30, 5:30] = 1
    m[60, 60] = 1  # one tiny island of class 1
    write_mask(masks / "a.png", m)
    out = tmp_path / "r"
    main(["validate", str(masks), "--out", str(out), "--workers", "1", "--quiet"])
    printed = capsys.readouterr().out
    assert printed.startswith("validated 1 item (masks layout)"), printed
    assert " 1 items/s" not in printed
    messages = pq.read_table(out / "findings").column("message").to_pylist()
    assert any(msg.startswith("class 1: 1 component smaller than 16 px") for msg in messages), messages


def test_counted_nouns_in_rule_messages():
    from fastmask.jobs.rules_semantic import unknown_color

    (one,) = unknown_color([((1, 2, 3), 7)])
    assert one.message.startswith("1 colour not in the label map (7 px)"), one.message
    (two,) = unknown_color([((1, 2, 3), 7), ((4, 5, 6), 1)])
    assert two.message.startswith("2 colours not in the label map (8 px)"), two.message


def test_a_resumed_run_reports_the_speed_of_its_own_work(mask_folder, tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["validate", str(mask_folder), "--out", str(out), "--workers", "1", "--quiet", "--shard-size", "1"]
    assert main(argv) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "(resumed:" not in first and " s (3 objects); 0 could not be read" in first and ", listing " in first
    (out / "_shards" / "00001.json").unlink()
    assert main([*argv, "--resume"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("validated 3 items (masks layout)"), first
    assert first.endswith("(resumed: 1 item run now, 2 finished shards kept, saved manifest reused: no listing); "
                          "0 could not be read"), first


# ---------------------------------------------------------------- first-run notices


def test_compiling_line_when_forced_and_never_when_suppressed(mask_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FASTMASK_COMPILE_NOTICE", "1")
    assert main(["scan", str(mask_folder), "--out", str(tmp_path / "a"), "--workers", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("fastmask scan: compiling kernels (first run only, ~30 s)") == 1, err
    monkeypatch.setenv("FASTMASK_COMPILE_NOTICE", "0")
    assert main(["scan", str(mask_folder), "--out", str(tmp_path / "b"), "--workers", "1", "--quiet"]) == 0
    assert "compiling" not in capsys.readouterr().err


def test_compiling_line_follows_the_cache_state_once_per_process(mask_folder, tmp_path, capsys, monkeypatch):
    import fastmask.cli as cli
    import fastmask.kernels as kernels

    monkeypatch.delenv("FASTMASK_COMPILE_NOTICE", raising=False)
    monkeypatch.setattr(cli, "_COMPILE_NOTICED", [])
    monkeypatch.setattr(kernels, "COLD_CACHE", False)  # a warm start: nothing said
    assert main(["scan", str(mask_folder), "--out", str(tmp_path / "a"), "--workers", "1", "--quiet"]) == 0
    assert "compiling" not in capsys.readouterr().err
    monkeypatch.setattr(kernels, "COLD_CACHE", True)
    for out in ("b", "c"):  # cold: said by the first command of the process only
        assert main(["scan", str(mask_folder), "--out", str(tmp_path / out), "--workers", "1", "--quiet"]) == 0
    assert capsys.readouterr().err.count("compiling kernels (first run only") == 1


def test_cold_cache_is_detected_from_the_cache_folder(tmp_path):
    import os
    import subprocess
    import sys

    code = "import fastmask.kernels as k; print(k.COLD_CACHE)"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    empty = {**env, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}  # a cache with nothing compiled
    assert subprocess.run([sys.executable, "-c", code], env=empty, capture_output=True, text=True,
                          check=True).stdout.strip() == "True"
    from fastmask.kernels import has_compiled

    (tmp_path / "warm").mkdir()
    assert not has_compiled(str(tmp_path / "warm"))
    (tmp_path / "warm" / "validate.value_bbox-10.py311.nbi").write_bytes(b"index")
    assert has_compiled(str(tmp_path / "warm"))


def test_a_coco_cache_build_is_announced_with_its_folder(real_data, tmp_path, capsys, monkeypatch):
    coco = real_data / "datumaro/tests/assets/coco_dataset/coco_instances/annotations/instances_train.json"
    monkeypatch.setenv("FASTMASK_CACHE", str(tmp_path / "cache"))
    assert main(["scan", str(coco), "--out", str(tmp_path / "a"), "--workers", "1", "--quiet"]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "cache" in ln]
    assert len(lines) == 1 and lines[0].startswith(f"fastmask: indexing {coco} once into a cache: "), lines
    where = lines[0].split("into a cache: ")[1].split(" (")[0]
    assert where.startswith(str(tmp_path / "cache" / "coco")) and (Path(where) / "meta.json").is_file()
    assert main(["scan", str(coco), "--out", str(tmp_path / "b"), "--workers", "1", "--quiet"]) == 0
    assert "cache" not in capsys.readouterr().err  # reused: nothing to say
