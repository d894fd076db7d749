"""What a process learns from its launcher (torchrun's or SLURM's variables), its device, the
refusal to resume at another world size, and the global-batch helpers on one process."""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch
from torch import nn

from uncollapse.errors import ToolError
from uncollapse.trainers import distributed
from uncollapse.trainers.distributed import Ranks, check_resume_world_size, launch_environment
from uncollapse.trainers.gather import gather, gather_with_grad, global_mean, local_rows


def test_torchrun_variables_name_the_rank():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "SLURM_PROCID": "0",
           "SLURM_NTASKS": "9"}
    assert launch_environment(env) == (3, 4, 1)  # torchrun's win over SLURM's


def test_srun_variables_name_the_rank_with_the_rendezvous_address():
    env = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
           "MASTER_ADDR": "node01", "MASTER_PORT": "29500"}
    assert launch_environment(env) == (5, 8, 1)


def test_srun_without_master_address_says_what_to_export():
    env = {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0"}
    with pytest.raises(ToolError, match="MASTER_ADDR and MASTER_PORT is not set; export"):
        launch_environment(env)


def test_no_launcher_or_one_task_is_a_single_process():
    assert launch_environment({}) is None
    assert launch_environment({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == (0, 1, 0)


@pytest.mark.parametrize("env, message", [
    ({"RANK": "x", "WORLD_SIZE": "2"}, "must be integers"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 is not a rank of WORLD_SIZE=2"),
])
def test_bad_launch_variables_are_refused(env, message):
    with pytest.raises(ToolError, match=message):
        launch_environment(env)


def test_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(distributed.TIMEOUT_VARIABLE, raising=False)
    assert distributed.timeout() == timedelta(seconds=600)
    monkeypatch.setenv(distributed.TIMEOUT_VARIABLE, "30")
    assert distributed.timeout() == timedelta(seconds=30)
    monkeypatch.setenv(distributed.TIMEOUT_VARIABLE, "soon")
    with pytest.raises(ToolError, match="not a number of seconds"):
        distributed.timeout()


def test_a_single_process_starts_no_group(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    ranks, device = distributed.start("cpu")
    assert ranks == Ranks() and device == torch.device("cpu")
    assert not torch.distributed.is_initialized()
    model = nn.Linear(2, 2)
    assert distributed.wrap(model, ranks, device) is model


def test_each_rank_takes_the_gpu_of_its_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert distributed.device_of("auto", Ranks(5, 8, 1)) == torch.device("cuda", 1)
    assert distributed.device_of("cuda", Ranks(7, 8, 3)) == torch.device("cuda", 3)
    assert distributed.device_of("cpu", Ranks(7, 8, 3)) == torch.device("cpu")
    assert distributed.device_of("auto", Ranks()) == torch.device("cuda")
    with pytest.raises(ValueError, match="local rank 4 has no GPU: this machine shows 4"):
        distributed.device_of("auto", Ranks(4, 8, 4))
    # a launcher that gives each task its own GPU (srun --gpus-per-task=1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert distributed.device_of("auto", Ranks(6, 8, 6)) == torch.device("cuda", 0)


def test_cuda_without_a_gpu_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="torch sees no CUDA device"):
        distributed.device_of("cuda", Ranks(1, 2, 1))
    assert distributed.device_of("auto", Ranks(1, 2, 1)) == torch.device("cpu")


def test_unwrap_finds_the_module_inside_compile_and_ddp_wrappers():
    model = nn.Linear(2, 2)

    class DistributedDataParallel(nn.Module):  # the name DDP goes by
        def __init__(self, module):
            super().__init__()
            self.module = module

    class Compiled(nn.Module):
        def __init__(self, module):
            super().__init__()
            self._orig_mod = module

    assert distributed.unwrap(Compiled(DistributedDataParallel(model))) is model
    assert distributed.unwrap(model) is model


def test_resume_at_another_world_size_is_refused_with_the_command_to_use():
    check_resume_world_size(2, Ranks(0, 2), "run/step-1.pt")
    with pytest.raises(ValueError, match=r"saved by a run of 4 process\(es\) and this launch "
                                         r"has 2.*torchrun --nproc_per_node=4"):
        check_resume_world_size(4, Ranks(1, 2), "run/step-1.pt")
    with pytest.raises(ValueError, match="resume with a single process"):
        check_resume_world_size(1, Ranks(0, 2), "run/step-1.pt")


def test_one_process_global_batch_is_the_local_batch():
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x and gather(x) is x
    assert local_rows(3).tolist() == [0, 1, 2]
    assert float(global_mean(torch.tensor(6.0), 3)) == 2.0
    assert float(global_mean(torch.tensor(6.0), torch.tensor(4))) == 1.5
    assert float(global_mean(torch.tensor(0.0), torch.tensor(0))) == 0.0
