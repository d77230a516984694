"""Staging a submit directory over SFTP, and following output files back as they grow."""

from __future__ import annotations

import asyncio
import os
import stat

from remote_harness import NAMES, client, key, known, pool, targets, wait_for  # noqa: F401
from sflow.remote.ssh import connect
from sflow.remote.stage import Follower, files_to_stage


def _tree(root, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(text)


SUBMIT = {
    "train.sh": "#!/bin/sh\necho train\n",
    "src/model.py": "x = 1\n",
    "src/cache.pyc": "junk",
    "data/big/shard0.bin": "b" * 10,
    "logs/run.log": "old",
    "keep.log": "kept by negation",
    "notes.tmp": "scratch",
    ".git/HEAD": "ref: refs/heads/main\n",
    "sub/.git": "gitdir: ../.git/modules/sub\n",
    "sub/code.c": "int main;\n",
}


def test_flowignore_wins_over_gitignore_and_git_is_always_skipped(tmp_path):
    _tree(tmp_path, SUBMIT)
    _tree(tmp_path, {".gitignore": "*.pyc\n", ".flowignore": "data/\n*.log\n!keep.log\n/notes.tmp\n"})
    chosen = files_to_stage(str(tmp_path))
    assert set(chosen) == {".flowignore", ".gitignore", "keep.log", "src/cache.pyc", "src/model.py",
                           "sub/code.c", "train.sh"}


def test_gitignore_is_used_without_a_flowignore(tmp_path):
    _tree(tmp_path, SUBMIT)
    _tree(tmp_path, {".gitignore": "*.pyc\nlogs/\n"})
    assert set(files_to_stage(str(tmp_path))) == {
        ".gitignore", "data/big/shard0.bin", "keep.log", "notes.tmp", "src/model.py", "sub/code.c", "train.sh"}


def test_without_ignore_files_everything_but_git_is_staged(tmp_path):
    _tree(tmp_path, SUBMIT)
    os.symlink("src", tmp_path / "loop")  # a link to a directory is not followed
    os.symlink("train.sh", tmp_path / "alias.sh")
    expected = {p for p in SUBMIT if ".git" not in p.split("/")} | {"alias.sh"}
    assert set(files_to_stage(str(tmp_path))) == expected


def test_stage_copies_the_chosen_files_with_their_modes(client, targets, pool, tmp_path):
    tmp_path = tmp_path / "submit"
    _tree(tmp_path, SUBMIT)
    _tree(tmp_path, {".flowignore": "data/\n*.log\n"})
    os.chmod(tmp_path / "train.sh", 0o755)
    copied = client.stage(targets[0], str(tmp_path), "jobs/42/submit")
    dest = os.path.join(pool.get(NAMES[0]).root, "jobs", "42", "submit")
    assert sorted(copied) == sorted({".flowignore", "train.sh", "src/model.py", "src/cache.pyc", "notes.tmp",
                                     "sub/code.c"})
    for rel in copied:
        with open(os.path.join(tmp_path, rel)) as a, open(os.path.join(dest, rel)) as b:
            assert a.read() == b.read(), rel
    assert not os.path.exists(os.path.join(dest, "data")) and not os.path.exists(os.path.join(dest, ".git"))
    assert not os.path.exists(os.path.join(dest, "keep.log"))
    assert stat.S_IMODE(os.stat(os.path.join(dest, "train.sh")).st_mode) == 0o755
    # The staged script runs there as it would here.
    assert client.run(targets[0], "./train.sh", cwd="jobs/42/submit").stdout == b"train\n"


def test_follower_appends_what_remote_files_gain(key, known, targets, pool, tmp_path):
    root = pool.get(NAMES[1]).root
    remote_out, remote_err = os.path.join(root, "out.txt"), os.path.join(root, "err.txt")
    local_out, local_err = str(tmp_path / "out.txt"), str(tmp_path / "err.txt")

    def append(path, text):
        with open(path, "a") as handle:
            handle.write(text)

    async def go():
        conn = await connect(targets[1], key=key, known_hosts=known)
        follower = Follower(conn, {"out.txt": local_out, "err.txt": local_err})
        try:
            assert await follower.poll() == 0  # neither exists yet
            append(remote_out, "one\n")
            assert await follower.poll() == 4
            append(remote_out, "two\n")
            append(remote_err, "warn\n")
            assert await follower.poll() == 9
            assert await follower.poll() == 0  # nothing new: nothing appended
            # A truncated remote file (a requeued job) starts its copy over.
            with open(remote_out, "w") as handle:
                handle.write("again\n")
            await follower.poll()
            with open(local_out) as handle:
                assert handle.read() == "again\n"
            await follower.close()

            # A follower started later resumes from the local copy's end.
            append(remote_out, "more\n")
            resumed = Follower(conn, {"out.txt": local_out})
            assert resumed.offsets["out.txt"] == len("again\n")
            assert await resumed.poll() == len("more\n")
            await resumed.close()
        finally:
            await conn.close()

    asyncio.run(go())
    with open(local_out) as out, open(local_err) as err:
        assert (out.read(), err.read()) == ("again\nmore\n", "warn\n")


def test_following_a_running_job_brings_back_all_its_output(client, targets, tmp_path):
    local = str(tmp_path / "slurm-7.out")
    job = client.start(targets[2], "for i in $(seq 1 30); do echo line $i; sleep 0.02; done >> slurm-7.out")
    follower = client.follow(targets[2], {"slurm-7.out": local}, interval=0.05)
    # Output arrives while the job is still writing, not only at the end.
    assert wait_for(lambda: os.path.exists(local) and 0 < os.path.getsize(local), 5)
    assert job.wait(10).exit_status == 0
    follower.stop()
    with open(local) as handle:
        assert handle.read() == "".join(f"line {i}\n" for i in range(1, 31))
