"""The process group genbench joins: launcher environments and sharding (genbench.distributed)."""

from __future__ import annotations

import pytest
import torch

from genbench.distributed import SINGLE, Context, current, gpu_index, init, launch_env
from genbench.errors import UserError


def test_no_launcher_is_a_world_of_one():
    assert launch_env({}) is None
    assert launch_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) is None  # one SLURM task
    assert current() == SINGLE and init("cpu") == SINGLE  # no group is made for one process


def test_torchrun_and_slurm_environments():
    assert launch_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)
    assert launch_env({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}) == (5, 8, 1)
    # torchrun inside a SLURM allocation: torchrun's variables win
    both = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "SLURM_PROCID": "0",
            "SLURM_NTASKS": "4"}
    assert launch_env(both) == (1, 2, 1)


@pytest.mark.parametrize("env", [{"RANK": "2", "WORLD_SIZE": "2"},
                                 {"RANK": "x", "WORLD_SIZE": "2"},
                                 {"SLURM_PROCID": "0", "SLURM_NTASKS": "two"}])
def test_inconsistent_environments_are_user_errors(env):
    with pytest.raises(UserError):
        launch_env(env)


@pytest.mark.parametrize("n", [0, 1, 7, 100, 50_000])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shards_cover_every_index_once_in_rank_order(n, world):
    blocks = [Context(rank, world).shard(n) for rank in range(world)]
    assert [i for block in blocks for i in block] == list(range(n))
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_each_rank_takes_its_own_gpu_or_the_one_it_was_given():
    assert gpu_index(3, visible=4) == 3  # torchrun: every GPU of the node is visible
    assert gpu_index(1, visible=1) == 0  # srun --gpus-per-task=1: each task sees its GPU as 0
    with pytest.raises(UserError, match="no GPU of its own"):
        gpu_index(2, visible=2)


class _Sent(Exception):
    pass


def test_a_cpu_tensor_is_reduced_on_the_wire_device(monkeypatch):
    """nccl reduces CUDA tensors only (a CPU one raises): all_reduce_sum moves a CPU tensor (the
    sample count, FID's float64 sums) to the wire device. Here the wire is the meta device and
    the all-reduce a fake that stops at the device it was given."""
    from genbench import distributed

    seen = []

    def all_reduce(tensor, op=None):
        seen.append((tensor.device, tensor.dtype, tuple(tensor.shape)))
        raise _Sent

    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.dist, "all_reduce", all_reduce)
    monkeypatch.setattr(distributed, "_wire", lambda: torch.device("meta"))
    with pytest.raises(_Sent):
        distributed.all_reduce_sum(torch.ones(3, dtype=torch.float64))
    assert seen == [(torch.device("meta"), torch.float64, (3,))]


def test_collective_timeout_is_long_and_checked():
    """Ranks wait in collectives while rank 0 works alone (a model lock, reference statistics,
    timing): two hours by default, not nccl's 10 minutes; the variable is checked in one line."""
    import datetime

    from genbench.distributed import collective_timeout

    assert collective_timeout({}) == datetime.timedelta(minutes=120)
    assert collective_timeout({"GENBENCH_DIST_TIMEOUT_MIN": "600"}) == datetime.timedelta(hours=10)
    for bad in ("0", "-5", "ten", ""):
        with pytest.raises(UserError, match="GENBENCH_DIST_TIMEOUT_MIN") as err:
            collective_timeout({"GENBENCH_DIST_TIMEOUT_MIN": bad})
        assert "\n" not in str(err.value)


def test_batch_dropout_draws_the_one_process_mask_for_any_world_size():
    """Under a data-parallel step each rank's dropout mask is its rows of the one-process mask
    (same seeded global generator), also for an input laid out with channels innermost, as
    diffusers' blocks leave it after attention; outside a step it is nn.Dropout."""
    import torch.nn.functional as F

    from genbench.backbones.layers import BatchDropout
    from genbench.distributed import BatchShard, drawing_for

    drop = BatchDropout(0.3).train()
    contiguous, channels_inner = torch.randn(8, 6, 4, 4), torch.randn(8, 4, 4, 6)
    for base, layout in ((contiguous, (0, 1, 2, 3)), (channels_inner, (0, 3, 1, 2))):
        x = base.permute(*layout)  # [8, 6, 4, 4] either way
        torch.manual_seed(5)
        one = F.dropout(x, 0.3, True)
        torch.manual_seed(5)
        assert torch.equal(drop(x), one)  # no step running: nn.Dropout
        for rows in ([0, 1, 2, 3], [4, 5, 6, 7], [1, 3, 5, 7]):
            shard = BatchShard(8, torch.tensor(rows))
            local = base[rows].permute(*layout)  # a rank's activations, laid out as in one
            torch.manual_seed(5)
            with drawing_for(shard):
                assert torch.equal(drop(local), one[rows]), (layout, rows)
        torch.manual_seed(6)  # another step's stream: another mask
        with drawing_for(BatchShard(8, torch.arange(4))):
            assert not torch.equal(drop(base[:4].permute(*layout)), one[:4])
    assert torch.equal(drop.eval()(x), x)


def test_batch_dropout_replaces_every_plain_dropout_keeping_the_state_dict():
    import timm.layers

    from genbench.backbones.layers import BatchDropout, batch_dropout

    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.2),
                              timm.layers.Mlp(4, 8, drop=0.1))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    batch_dropout(net)
    drops = [m for m in net.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(type(m) is BatchDropout for m in drops)
    assert sorted(m.p for m in drops) == [0.1, 0.1, 0.2]
    assert net.state_dict().keys() == before.keys()
