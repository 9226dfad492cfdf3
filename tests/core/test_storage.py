"""Tests of :mod:`stablesal.core.storage`.

Units of work give the same results in this process, in a process pool and on a real Dask
LocalCluster; an interrupted run (kill -9) resumes, recomputes nothing finished and ends with the
same numbers."""

import os


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    import stat

    from stablesal.core.storage import atomic_write_text

    previous = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "shared.txt", "readable by the group and others")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "shared.txt").stat().st_mode) == 0o644
