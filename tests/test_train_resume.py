"""Training a user can trust: --resume keeps the run's own options, a signal saves the state,
--help shows every default, the data is found like everywhere else, the best epoch is visible."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, run_cli, textured_bgr

torch = pytest.importorskip("torch")

from edge_sr.imageio import write_image  # noqa: E402


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("hr")
    for i in range(4):
        write_image(d / f"img{i}.png", textured_bgr(64 + 4 * i, 72, seed=i))
    return d


def _state(run):
    return torch.load(run / "state.pt", weights_only=True)


def _base(hr, run):
    return ["train", "--data", str(hr), "--val", str(hr), "--out", str(run), "--batch", "2", "--patch", "16",
            "--warmup-steps", "1", "--threads", "1", "--no-progress"]


def test_resume_keeps_the_runs_own_options(hr_folder, tmp_path):
    run = tmp_path / "run"
    r = run_cli(*_base(hr_folder, run), "--epochs", "2", "--steps-per-epoch", "3", "--lr", "1e-3", "--max-steps", "2")
    assert r.returncode == 0, r.stderr
    assert _state(run)["step"] == 2
    # no options again: the saved 2 epochs x 3 steps, not the default 240 x 500
    r = run_cli("train", "--out", str(run), "--resume", "--no-progress", "--threads", "1")
    assert r.returncode == 0, r.stderr
    st = _state(run)
    assert st["step"] == 6 and st["epoch"] == 2
    assert st["args"]["lr"] == 1e-3 and st["args"]["batch"] == 2 and st["args"]["patch"] == 16
    assert st["args"]["data"] == [str(hr_folder)]
    # asked again with more epochs: lengthened, and said so
    r = run_cli("train", "--out", str(run), "--resume", "--no-progress", "--epochs", "3")
    assert r.returncode == 0, r.stderr
    assert _state(run)["step"] == 9
    assert "epochs 2 -> 3" in r.stderr
    # a change that would not continue the same run: one line, nothing trained
    r = run_cli("train", "--out", str(run), "--resume", "--batch", "8")
    assert r.returncode == 2 and "batch=2" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert _state(run)["step"] == 9


def test_log_shows_best_so_far(hr_folder, tmp_path):
    run = tmp_path / "b"
    r = run_cli(*_base(hr_folder, run), "--epochs", "3", "--steps-per-epoch", "2")
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    vals = [r["val_psnr"] for r in recs]
    # best_psnr is the running maximum of the validation PSNR (independent recomputation)
    assert [r["best_psnr"] for r in recs] == pytest.approx([max(vals[: i + 1]) for i in range(len(vals))])
    best_i = max(range(len(vals)), key=lambda i: vals[i])
    assert recs[-1]["best_epoch"] == recs[best_i]["epoch"]
    assert "best" in r.stderr  # the epoch line names the best so far


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_state_at_the_current_step(hr_folder, tmp_path, sig):
    run = tmp_path / "sig"
    cmd = [sys.executable, "-m", "edge_sr", *_base(hr_folder, run), "--epochs", "1000", "--steps-per-epoch", "1000",
           "--val", "none"]
    p = subprocess.Popen(cmd, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        # train() takes SIGINT/SIGTERM before it makes the run folder: from then on a signal means
        # "finish this step, save, stop" (one taken before the first step stops after it)
        deadline = time.time() + 60
        while not run.exists() and p.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == (143 if sig == signal.SIGTERM else 130), err[-2000:]
    assert "Traceback" not in err
    st = _state(run)
    assert 0 < st["step"] < 1000 * 1000
    assert f"at step {st['step']}" in out and "--resume" in out
    # --resume continues from exactly that step
    r = run_cli("train", "--out", str(run), "--resume", "--no-progress", "--max-steps", "2")
    assert r.returncode == 0, r.stderr
    assert _state(run)["step"] == st["step"] + 2


def test_help_shows_every_default():
    r = run_cli("train", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    from edge_sr.commands.train import DEFAULTS

    for key in DEFAULTS:
        flag = "--" + key.replace("_", "-")
        assert flag in text, flag
    # each option's help names its default: count them against the options that take a value
    import argparse

    from edge_sr.commands.train import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    sub = parser._subparsers._group_actions[0].choices["train"]
    for action in sub._actions:
        if action.option_strings and action.nargs != 0 and action.dest not in ("out", "help"):
            assert "default" in (action.help or ""), action.dest


def test_train_and_eval_find_data_like_the_other_commands(tmp_path, monkeypatch):
    from edge_sr import datasets

    monkeypatch.setenv("EDGE_SR_DATA", str(tmp_path / "nothing-here"))
    cands = datasets.candidates()
    assert cands[0] == tmp_path / "nothing-here"
    assert cands[1].name == "data" and cands[1].parent.name == "shared"
    (tmp_path / "d" / "train" / "t91").mkdir(parents=True)
    (tmp_path / "d" / "val" / "set5").mkdir(parents=True)
    monkeypatch.setenv("EDGE_SR_DATA", str(tmp_path / "d"))
    assert datasets.data_dir("train") == tmp_path / "d" / "train"
    assert datasets.data_dir("val", "set5") == tmp_path / "d" / "val" / "set5"
    assert datasets.data_dir("val", "set14") is None
    msg = datasets.not_found_message("training images", "--data")
    for name in ("T91", "BSD200", "Set5", "Set14", "DIV2K", "EDGE_SR_DATA"):
        assert name in msg


def test_train_without_any_data_says_where_to_get_it(tmp_path):
    # run from a copy of the package tree so shared/data beside the repository is not found
    env = dict(os.environ, EDGE_SR_DATA=str(tmp_path / "missing"))
    code = (
        "import sys, edge_sr.datasets as d; d.candidates = lambda: [__import__('pathlib').Path(sys.argv[1])];"
        "from edge_sr.cli import main; sys.exit(main(['train', '--out', sys.argv[2]]))"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "missing"), str(tmp_path / "o")],
                       capture_output=True, text=True, env=env, cwd=str(REPO))
    assert r.returncode == 2, r.stderr
    assert "T91" in r.stderr and "Set5" in r.stderr and "Traceback" not in r.stderr
    code = code.replace("['train', '--out', sys.argv[2]]", "['eval']")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "missing"), str(tmp_path / "o")],
                       capture_output=True, text=True, env=env, cwd=str(REPO))
    assert r.returncode == 2 and "Set14" in r.stderr and "Traceback" not in r.stderr


def _resolved(*argv):
    import argparse

    from edge_sr.commands.train import add_parser, resolve_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return resolve_args(parser.parse_args(["train", *argv]))[0]


def test_learning_rate_default_follows_the_preset(hr_folder, tmp_path):
    """large's default peak rate is its own (2e-3 left the bicubic start unstably on the H200); a given --lr wins,
    and the other presets keep the common default."""
    from edge_sr.commands.train import DEFAULTS, PRESET_LR

    base = ["--data", str(hr_folder), "--val", "none", "--out", str(tmp_path / "r")]
    assert _resolved(*base, "--preset", "large").lr == PRESET_LR["large"] < DEFAULTS["lr"]
    assert _resolved(*base, "--preset", "large", "--lr", "1e-3").lr == 1e-3
    assert _resolved(*base, "--preset", "normal").lr == DEFAULTS["lr"]
    assert _resolved(*base).lr == DEFAULTS["lr"]


def test_qat_only_options_need_qat(hr_folder, tmp_path):
    r = run_cli("train", "--data", str(hr_folder), "--out", str(tmp_path / "r"), "--keep-float", "first_conv")
    assert r.returncode == 2 and "--keep-float is a --qat option" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()
