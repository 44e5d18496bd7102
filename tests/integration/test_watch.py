"""`appliance watch`: inbox folders on a share or a USB stick, run as the real command."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BIN, Signer, current_of, run

INTERVAL = 0.3
SETTLE = 1.0  # the default is 10 s; the tests that are not about it need not wait that long


class Watcher:
    """A running `appliance watch` process whose stderr is collected as it comes."""

    def __init__(
        self, inboxes: list[Path], data_dir: Path, signer: Signer, settle: float = SETTLE
    ) -> None:
        argv = [str(BIN / "appliance"), "watch", *map(str, inboxes), "--data-dir", str(data_dir)]
        argv += ["--signers", str(signer.allowed_signers), "--interval", str(INTERVAL)]
        argv += ["--settle", str(settle)]
        self.process = subprocess.Popen(
            argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 30) -> str:
        """The first output line containing `text`, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            assert self.process.poll() is None, f"watch exited: {self.lines}"
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} in {timeout}s: {self.lines}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.reader.join(timeout=5)
        return code


def watch_once(inbox: Path, data_dir: Path, trusted: Signer) -> subprocess.CompletedProcess[str]:
    """`appliance watch --once` on one inbox: look twice, import what is ready, exit."""
    argv: list[str | Path] = [
        "appliance",
        "watch",
        inbox,
        "--once",
        "--interval",
        "0.2",
        "--settle",
        "0.2",
        "--data-dir",
        data_dir,
    ]
    return run(*argv, "--signers", trusted.allowed_signers)


@pytest.fixture
def watcher_factory(tmp_path: Path, signer: Signer) -> Iterator[object]:
    started: list[Watcher] = []

    def start(*inboxes: Path, settle: float = SETTLE) -> Watcher:
        watcher = Watcher(list(inboxes), tmp_path / "data", signer, settle)
        started.append(watcher)
        return watcher

    yield start
    for watcher in started:
        if watcher.process.poll() is None:
            watcher.process.kill()
            watcher.process.wait()


def test_watch_once_imports_a_pack_and_moves_it_to_done(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    dropped = Path(shutil.copy(good_pack, inbox / "results.pack"))
    old = time.time() - 60
    os.utime(dropped, (old, old))
    done = watch_once(inbox, tmp_path / "data", signer)
    assert done.returncode == 0, done.stderr
    assert "imported as v0001" in done.stderr
    assert (inbox / "done" / "results.pack").is_file()
    assert not dropped.exists()
    assert current_of(tmp_path / "data") == "v0001"


def test_refused_pack_moves_to_rejected_with_its_reason(
    tmp_path: Path, good_pack: Path, untrusted_signer: Signer
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(good_pack, inbox / "foreign.pack")
    os_time = time.time() - 60
    os.utime(inbox / "foreign.pack", (os_time, os_time))
    done = watch_once(inbox, tmp_path / "data", untrusted_signer)
    assert done.returncode == 3
    assert (inbox / "rejected" / "foreign.pack").is_file()
    reason = (inbox / "rejected" / "foreign.pack.reason.txt").read_text()
    assert reason.startswith("signature:") and "not an allowed signer" in reason
    assert current_of(tmp_path / "data") is None


def test_a_pack_still_being_copied_is_not_read(
    tmp_path: Path, good_pack: Path, signer: Signer, watcher_factory
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watcher = watcher_factory(inbox)
    watcher.wait_for("watching")
    data = good_pack.read_bytes()
    target = inbox / "slow.pack"
    # A slow copy: a chunk every 0.1 s for 3 s, so the file keeps changing for ten intervals.
    pieces = 30
    step = len(data) // pieces + 1
    with target.open("wb") as handle:
        for start in range(0, len(data), step):
            handle.write(data[start : start + step])
            handle.flush()
            time.sleep(0.1)
    watcher.wait_for("slow.pack imported as v0001")
    assert not (inbox / "rejected").exists(), watcher.lines
    assert (inbox / "done" / "slow.pack").read_bytes() == data
    assert watcher.stop() == 0


def copy_with_a_pause(source: Path, target: Path, pause: float) -> None:
    """Copy half of `source`, stop for `pause` seconds (a stalled share), then the rest."""
    data = source.read_bytes()
    half = len(data) // 2
    with target.open("wb") as handle:
        handle.write(data[:half])
        handle.flush()
        time.sleep(pause)
        handle.write(data[half:])


def test_a_copy_that_pauses_for_less_than_the_settle_time_is_not_read(
    tmp_path: Path, good_pack: Path, signer: Signer, watcher_factory
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watcher = watcher_factory(inbox, settle=5.0)
    watcher.wait_for("watching")
    copy_with_a_pause(good_pack, inbox / "stalled.pack", pause=3.5)
    watcher.wait_for("stalled.pack imported as v0001")
    assert not any("truncated" in line or "refused" in line for line in watcher.lines)
    assert not (tmp_path / "data" / "rejected").exists() or not any(
        (tmp_path / "data" / "rejected").iterdir()
    )
    assert watcher.stop() == 0


def test_a_pack_read_half_written_is_not_moved_while_it_grows(
    tmp_path: Path, good_pack: Path, signer: Signer, watcher_factory
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watcher = watcher_factory(inbox, settle=1.0)  # shorter than the pause: it is read too early
    watcher.wait_for("watching")
    # Read at about 1.2 s, refused as truncated, then growing again at 2.5 s: well within the
    # three settle times it must stay unchanged before it is moved.
    copy_with_a_pause(good_pack, inbox / "stalled.pack", pause=2.5)
    watcher.wait_for("looks truncated")
    watcher.wait_for("stalled.pack imported as v0001")
    assert not (inbox / "rejected").exists(), watcher.lines
    assert (inbox / "done" / "stalled.pack").read_bytes() == good_pack.read_bytes()
    assert watcher.stop() == 0


def test_a_truly_truncated_pack_is_moved_once_it_stays_unchanged(
    tmp_path: Path, good_pack: Path, signer: Signer, watcher_factory
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    data = good_pack.read_bytes()
    (inbox / "cut.pack").write_bytes(data[: len(data) // 2])
    watcher = watcher_factory(inbox, settle=1.0)
    watcher.wait_for("looks truncated")
    assert (inbox / "cut.pack").exists()
    watcher.wait_for("cut.pack refused")
    assert (inbox / "rejected" / "cut.pack").is_file()
    reason = (inbox / "rejected" / "cut.pack.reason.txt").read_text()
    assert reason.startswith("truncated:")
    assert watcher.stop() == 0


def test_hidden_and_partial_names_are_left_alone(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in (".results.pack.x1y2.part", "results.pack.part", "notes.txt"):
        shutil.copy(good_pack, inbox / name)
    done = watch_once(inbox, tmp_path / "data", signer)
    assert done.returncode == 0
    assert sorted(p.name for p in inbox.iterdir()) == [
        ".results.pack.x1y2.part",
        "notes.txt",
        "results.pack.part",
    ]


def test_watch_survives_the_stick_being_pulled_out_and_put_back(
    tmp_path: Path, good_pack: Path, newer_pack: Path, signer: Signer, watcher_factory
) -> None:
    stick = tmp_path / "media" / "usb"
    stick.mkdir(parents=True)
    share = tmp_path / "share"
    share.mkdir()
    watcher = watcher_factory(stick, share)
    watcher.wait_for("watching")
    shutil.copy(good_pack, stick / "first.pack")
    watcher.wait_for("first.pack imported as v0001")

    pulled = tmp_path / "media" / "pulled"
    stick.rename(pulled)
    watcher.wait_for("inbox is not there")
    time.sleep(3 * INTERVAL)
    pulled.rename(stick)
    watcher.wait_for("inbox is back")
    shutil.copy(newer_pack, stick / "second.pack")
    watcher.wait_for("second.pack imported as v0002")
    assert current_of(tmp_path / "data") == "v0002"
    assert watcher.stop() == 0
    assert "stopped" in watcher.lines[-1]


def test_watch_reports_a_missing_inbox_from_the_start(
    tmp_path: Path, signer: Signer, watcher_factory
) -> None:
    watcher = watcher_factory(tmp_path / "not-mounted")
    watcher.wait_for("inbox is not there")
    (tmp_path / "not-mounted").mkdir()
    watcher.wait_for("inbox is back")
    assert watcher.stop() == 0


def test_the_settle_time_is_timed_by_the_nodes_clock_not_the_files_mtime(
    tmp_path: Path, good_pack: Path, signer: Signer, watcher_factory
) -> None:
    # A copy that keeps its source's old mtime (cp -p, or a share whose clock is behind):
    # the mtime says "settled long ago" while the copy is still going on.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watcher = watcher_factory(inbox, settle=4.0)
    watcher.wait_for("watching")
    data = good_pack.read_bytes()
    target = inbox / "kept-mtime.pack"
    an_hour_ago = time.time() - 3600
    target.write_bytes(data[: len(data) // 2])
    os.utime(target, (an_hour_ago, an_hour_ago))
    time.sleep(2.0)
    with target.open("ab") as handle:
        handle.write(data[len(data) // 2 :])
    os.utime(target, (an_hour_ago, an_hour_ago))
    watcher.wait_for("kept-mtime.pack imported as v0001")
    assert not any("truncated" in line or "refused" in line for line in watcher.lines)
    assert watcher.stop() == 0
