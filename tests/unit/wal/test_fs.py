"""The FileSystem contract (RealFs and MemFs) and MemFs's crash model.

Goal: both file systems behave alike for everything the WAL uses, and MemFs crashes keep exactly
what was made durable (bytes by fsync, names by fsync_dir), tear only the non-durable tail, and
are deterministic for a seeded rng. Method: the same operations on both; many seeded crashes.
"""

import random

import pytest

from qnode.wal.fs import PAGE_SIZE, MemFs, RealFs


@pytest.fixture(params=["real", "mem"])
def disk(request, tmp_path):
    if request.param == "real":
        return RealFs(), str(tmp_path / "d")
    return MemFs(), "/d"


def test_contract_basic_file_operations(disk):
    fs, d = disk
    fs.makedirs(d)
    h = fs.open(f"{d}/a", create=True)
    with pytest.raises(FileExistsError):
        fs.open(f"{d}/a", create=True)
    fs.append(h, b"hello ")
    fs.append(h, b"world")
    fs.fsync(h)
    assert fs.size(h) == 11
    fs.truncate(h, 5)
    fs.append(h, b"!")
    fs.close(h)
    assert fs.read(f"{d}/a") == b"hello!"
    fs.rename(f"{d}/a", f"{d}/b")
    fs.fsync_dir(d)
    assert fs.list(d) == ["b"]
    assert fs.exists(f"{d}/b")
    assert not fs.exists(f"{d}/a")
    fs.remove(f"{d}/b")
    assert fs.list(d) == []
    with pytest.raises(FileNotFoundError):
        fs.open(f"{d}/missing")
    assert fs.free_bytes(d) > 0


def test_memfs_crash_keeps_durable_bytes_and_names_only():
    fs = MemFs()
    fs.makedirs("/d")
    h = fs.open("/d/kept", create=True)
    fs.append(h, b"durable")
    fs.fsync(h)
    fs.fsync_dir("/d")
    fs.append(h, b"-not-durable")
    h2 = fs.open("/d/unnamed", create=True)     # its name is never fsynced
    fs.append(h2, b"x")
    fs.fsync(h2)
    for seed in range(50):
        fs2 = MemFs()
        fs2.makedirs("/d")
        h = fs2.open("/d/kept", create=True)
        fs2.append(h, b"durable")
        fs2.fsync(h)
        fs2.fsync_dir("/d")
        fs2.append(h, b"-not-durable")
        fs2.crash(random.Random(seed))
        assert fs2.list("/d") == ["kept"]
        data = fs2.read("/d/kept")
        assert data.startswith(b"durable")
        assert len(data) <= len(b"durable-not-durable")
    fs.crash(random.Random(1))
    assert fs.list("/d") == ["kept"]


def test_memfs_crash_is_deterministic_and_can_tear_pages_out_of_order():
    def image(seed: int) -> bytes:
        fs = MemFs()
        fs.makedirs("/d")
        h = fs.open("/d/f", create=True)
        fs.append(h, b"D" * 100)
        fs.fsync(h)
        fs.fsync_dir("/d")
        fs.append(h, bytes(range(256)) * (5 * PAGE_SIZE // 256))
        fs.crash(random.Random(seed))
        return fs.read("/d/f")

    images = [image(seed) for seed in range(64)]
    assert images == [image(seed) for seed in range(64)]
    full = 100 + 5 * PAGE_SIZE
    outcomes = set()
    for data in images:
        assert data[:100] == b"D" * 100
        if len(data) == 100:
            outcomes.add("none")
        elif len(data) == full and b"\x00" * PAGE_SIZE not in data[PAGE_SIZE:]:
            outcomes.add("all")
        elif b"\x00" * (PAGE_SIZE - 100) in data:
            outcomes.add("page-subset")
        else:
            outcomes.add("prefix")
    assert outcomes == {"none", "all", "prefix", "page-subset"}


def test_memfs_unfsynced_remove_and_rename_are_undone_by_a_crash():
    fs = MemFs()
    fs.makedirs("/d")
    h = fs.open("/d/old", create=True)
    fs.append(h, b"v1")
    fs.fsync(h)
    fs.fsync_dir("/d")
    fs.rename("/d/old", "/d/new")
    fs.crash(random.Random(0))
    assert fs.list("/d") == ["old"]
    fs.remove("/d/old")
    fs.crash(random.Random(0))
    assert fs.read("/d/old") == b"v1"
    fs.remove("/d/old")
    fs.fsync_dir("/d")
    fs.crash(random.Random(0))
    assert fs.list("/d") == []


def test_memfs_capacity_and_injected_errors():
    fs = MemFs(capacity_size=10)
    fs.makedirs("/d")
    h = fs.open("/d/f", create=True)
    fs.append(h, b"12345678")
    assert fs.free_bytes("/d") == 2
    with pytest.raises(OSError):
        fs.append(h, b"abc")
    fs.fsync_error = OSError(5, "EIO")
    with pytest.raises(OSError):
        fs.fsync(h)
    with pytest.raises(OSError):
        fs.fsync_dir("/d")


def test_contract_write_zeros_after_the_end_does_not_move_it(disk):
    fs, d = disk
    fs.makedirs(d)
    h = fs.open(f"{d}/f", create=True)
    fs.append(h, b"abc")
    fs.write_zeros(h, 3, 100)                      # zeros over [3, 103)
    assert fs.size(h) == 3
    assert fs.read(f"{d}/f") == b"abc" + bytes(100)
    fs.append(h, b"de")                            # overwrites zeros, the file does not grow
    assert fs.read(f"{d}/f") == b"abcde" + bytes(98)
    fs.write_zeros(h, 103, 3)                      # extends the zeros to [5, 106)
    assert fs.read(f"{d}/f") == b"abcde" + bytes(101)
    with pytest.raises(AssertionError):
        fs.write_zeros(h, 4, 10)                   # never over what was appended
    fs.fsync(h)
    fs.truncate(h, 5)
    assert fs.size(h) == 5
    fs.close(h)
    assert fs.read(f"{d}/f") == b"abcde"
    h = fs.open(f"{d}/f")
    assert fs.size(h) == 5
    fs.close(h)


def test_memfs_crash_tears_an_overwrite_of_durable_zeros_page_by_page():
    pages = 6
    new = bytes(range(1, 256)) * (pages * PAGE_SIZE // 255 + 1)

    def image(seed: int) -> bytes:
        fs = MemFs()
        fs.makedirs("/d")
        h = fs.open("/d/f", create=True)
        fs.append(h, b"H" * 10)
        fs.write_zeros(h, 10, pages * PAGE_SIZE)
        fs.fsync(h)
        fs.fsync_dir("/d")
        fs.append(h, new[: pages * PAGE_SIZE - 10])  # over the zeros, up to the old end
        fs.crash(random.Random(seed))
        return fs.read("/d/f")

    images = [image(seed) for seed in range(64)]
    assert images == [image(seed) for seed in range(64)]
    size = 10 + pages * PAGE_SIZE
    after = b"H" * 10 + new[: pages * PAGE_SIZE - 10] + bytes(10)
    before = b"H" * 10 + bytes(pages * PAGE_SIZE)
    kinds = set()
    for data in images:
        assert len(data) == size                       # the size was durable
        held = []
        for p in range(pages + 1):
            page = data[p * PAGE_SIZE:(p + 1) * PAGE_SIZE]
            assert page in (before[p * PAGE_SIZE:(p + 1) * PAGE_SIZE], after[p * PAGE_SIZE:(p + 1) * PAGE_SIZE])
            held.append(page == after[p * PAGE_SIZE:(p + 1) * PAGE_SIZE])
        if not any(held[:pages]):
            kinds.add("none")
        elif all(held):
            kinds.add("all")
        elif held[:pages] == sorted(held[:pages], reverse=True):
            kinds.add("prefix")
        else:
            kinds.add("out-of-order")
    assert kinds == {"none", "all", "prefix", "out-of-order"}
