"""The process group genbench joins: launcher environments and sharding (genbench.distributed)."""

from __future__ import annotations

import pytest

from genbench.distributed import SINGLE, Context, current, init, launch_env
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
