"""State trees (safetensors + JSON), signed pickles and the legacy allowlist: exact round trips,
and every unexpected file is one line naming it, with nothing unpickled."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from multiticket.core import signing
from multiticket.core.legacy import TRUST_ENV, load_legacy
from multiticket.core.rewind import RewindPoint, rng_state
from multiticket.core.statefile import Pickled, has_tree, load_tree, save_tree, saved_files
from multiticket.errors import UserError


def _equal(a: object, b: object) -> bool:
    """Exact equality, types included (np.float64 is not float, tuple is not list)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a, b))  # type: ignore[union-attr]
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)  # type: ignore[union-attr,arg-type]
    if isinstance(a, dict):
        return list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)  # type: ignore[union-attr,index]
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))  # type: ignore[arg-type]
    if isinstance(a, float) and np.isnan(a):
        return bool(np.isnan(b))  # type: ignore[arg-type]
    return a == b


def test_round_trip_is_exact(tmp_path: Path) -> None:
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    tree = {
        "rng": rng_state(), "optimizer": opt.state_dict(),
        "numbers": [0, -(2**70), 1.5, float("inf"), float("-inf"), float("nan"), True, None, "text"],
        "numpy": [np.float64(0.1), np.int64(-3), np.bool_(True), np.uint32(7), np.float32(2.5)],
        "arrays": {"big_endian": np.arange(6, dtype=">i4").reshape(2, 3), "view": np.arange(10.0)[::3],
                   "empty": np.zeros((0, 2), dtype=np.uint8), "scalar": np.array(3.0)},
        "tensors": [torch.arange(4, dtype=torch.bfloat16), torch.zeros(()), torch.ones(2, 2).t()],
        "keys": {1: "int key", "$marker": "dollar key", "plain": ("a", ("nested",))},
    }  # fmt: skip
    shared = torch.arange(3.0)
    tree["same_tensor_twice"] = [shared, shared]
    assert save_tree(tmp_path, "s", tree) == ["s.safetensors", "s.json"]
    back = load_tree(tmp_path, "s")
    expected = {**tree, "arrays": {k: np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("="))
                                   for k, v in tree["arrays"].items()}}  # fmt: skip
    assert _equal(back, expected)
    random.setstate(back["rng"]["python"])  # the RNG states are usable as they are
    np.random.set_state(back["rng"]["numpy"])
    torch.set_rng_state(back["rng"]["torch"])


def test_unstorable_objects_are_refused_when_saving(tmp_path: Path) -> None:
    for bad in ({"x": object()}, {"x": np.array(["a"], dtype=object)}, {(1, 2): 3}, {"s": {1, 2}}):
        with pytest.raises(TypeError):
            save_tree(tmp_path, "s", bad)


@pytest.mark.parametrize(
    "skeleton, words",
    [
        (b"\x80\x04K\x01.", "not a valid state skeleton"),  # a pickle where the JSON belongs
        (b'{"format": "multiticket-state/1", "tree": NaN}', "not a valid state skeleton"),
        (b'{"format": "other", "tree": 1}', "not a multiticket-state/1 skeleton"),
        (b'{"format": "multiticket-state/1", "tree": {"$tensor": "9"}}', "not in s.safetensors"),
        (b'{"format": "multiticket-state/1", "tree": {"$object": "os.system"}}', "unexpected node"),
        (b'{"format": "multiticket-state/1", "tree": {"$tensor": "0", "extra": 1}}', "unexpected node"),
        (b'{"format": "multiticket-state/1", "tree": {"$ndarray": "0", "dtype": "O"}}', "unsupported numpy dtype"),
        (b'{"format": "multiticket-state/1", "tree": {"$npscalar": "<u1", "value": 300}}', "out of range"),
        (b'{"format": "multiticket-state/1", "tree": {"$dict": [[[1], 2]]}}', "malformed $dict"),
        (b'{"format": "multiticket-state/1", "tree": 1}', "tensor(s) its skeleton does not name"),
        (b'{"format": "multiticket-state/1", "tree": ' + b"[" * 100 + b"]" * 100 + b"}", "nested deeper"),
        (b'{"format": "multiticket-state/1", "tree": {"$pickled": 0}}', "s.pickle, which is missing"),
    ],
)
def test_unexpected_skeletons_are_one_line_naming_the_file(tmp_path: Path, skeleton: bytes, words: str) -> None:
    save_tree(tmp_path, "s", {"t": torch.ones(2)})
    (tmp_path / "s.json").write_bytes(skeleton)
    with pytest.raises(UserError, match="s\\.(json|safetensors)") as info:
        load_tree(tmp_path, "s")
    assert words in str(info.value) and "\n" not in str(info.value)


def test_pickled_objects_need_this_users_signature(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(signing.KEY_ENV, str(tmp_path / "keys" / "mine"))
    tree = {"env": Pickled({"anything": (1, [2])}), "n": 1}
    assert save_tree(tmp_path, "s", tree) == ["s.safetensors", "s.json", "s.pickle"]
    assert oct((tmp_path / "keys" / "mine").stat().st_mode & 0o777) == "0o600"
    assert load_tree(tmp_path, "s") == tree
    assert saved_files(tmp_path, "s") == ["s.safetensors", "s.json", "s.pickle"] and has_tree(tmp_path, "s")

    monkeypatch.setenv(signing.KEY_ENV, str(tmp_path / "keys" / "someone else's"))
    with pytest.raises(UserError, match="s.pickle: signature does not match this user's key"):
        load_tree(tmp_path, "s")
    monkeypatch.setenv(signing.KEY_ENV, str(tmp_path / "keys" / "mine"))
    data = (tmp_path / "s.pickle").read_bytes()
    (tmp_path / "s.pickle").write_bytes(data[:-2] + b"N.")  # same signature, other payload
    with pytest.raises(UserError, match="signature does not match"):
        load_tree(tmp_path, "s")
    (tmp_path / "s.pickle").write_bytes(data.partition(b"\n")[2])  # no signature at all
    with pytest.raises(UserError, match="not a signed multiticket file"):
        load_tree(tmp_path, "s")


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(signing.KEY_ENV, str(tmp_path / "k"))
    first = signing.signing_key()
    signing._create(tmp_path / "k")  # a second process losing the race keeps the first key
    assert signing.signing_key() == first and len(first) == 32
    (tmp_path / "k").write_text("not hex\n")
    with pytest.raises(UserError, match="k: signing key .* is not a hex string"):
        signing.signing_key()


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (f"touch '{self.marker}'",))


def test_legacy_files_load_through_the_allowlist_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What older versions wrote (tensors, numpy RNG arrays and scalars) loads; a payload does not,
    and the error names the global it would have called."""
    monkeypatch.delenv(TRUST_ENV, raising=False)
    honest = {"rng": rng_state(), "count": np.float64(3.0), "gen": np.random.default_rng(0), "t": torch.ones(2)}
    torch.save(honest, tmp_path / "state.pt")
    back = load_tree(tmp_path, "state")
    assert _equal(back["rng"], honest["rng"]) and back["count"] == 3.0
    assert back["gen"].random() == np.random.default_rng(0).random()

    marker = tmp_path / "marker"
    torch.save({"x": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match=r"evil.pt: written by an older multiticket and holds posix.system.*"
                                        r"--trust-checkpoints"):
        load_tree(tmp_path, "evil")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="junk.pt: cannot be read"):
        load_legacy(tmp_path / "junk.pt")
    assert not marker.exists()
    monkeypatch.setenv(TRUST_ENV, "1")
    load_tree(tmp_path, "evil")
    assert marker.exists(), "trusted: the old unrestricted torch.load"


def test_rewind_point_refuses_wrong_fields_and_rng(tmp_path: Path) -> None:
    point = RewindPoint.capture(torch.nn.Linear(2, 2), 3)
    point.save(tmp_path)
    assert RewindPoint.load(tmp_path).step == 3
    save_tree(tmp_path, "state", {"step": 3, "optimizers": [], "rng": {"torch": "x"}, "extra": {}})
    before = torch.get_rng_state()
    with pytest.raises(UserError, match="holds no valid RNG state"):
        RewindPoint.load(tmp_path)
    assert torch.equal(torch.get_rng_state(), before)
    save_tree(tmp_path, "state", [1, 2])
    with pytest.raises(UserError, match="has not the fields of a rewind point"):
        RewindPoint.load(tmp_path)


def test_a_key_others_can_read_a_dangling_link_or_an_unwritable_place_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The signing key is treated like an ssh private key (issue 29)."""
    key = tmp_path / "k"
    monkeypatch.setenv(signing.KEY_ENV, str(key))
    signing.signing_key()
    assert (key.stat().st_mode & 0o777) == 0o600
    key.chmod(0o666)
    with pytest.raises(UserError, match=r"accessible by group or others \(mode 0666\); run: chmod 600"):
        signing.signing_key()
    key.chmod(0o640)
    with pytest.raises(UserError, match="mode 0640"):
        signing.signing_key()
    dangling = tmp_path / "gone"
    dangling.symlink_to(tmp_path / "nowhere")
    monkeypatch.setenv(signing.KEY_ENV, str(dangling))
    with pytest.raises(UserError, match="symbolic link to nothing"):
        signing.signing_key()
    monkeypatch.delenv(signing.KEY_ENV)
    monkeypatch.setenv("XDG_CONFIG_HOME", "/proc/nope")
    with pytest.raises(UserError, match=r"cannot create the signing key .*set MULTITICKET_KEY_FILE"):
        signing.signing_key()
