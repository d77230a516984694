"""A tiny DDP check: every worker contributes its rank; all-reduce sums them."""

import os

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
value = torch.tensor([float(rank)])
dist.all_reduce(value)
expected = world * (world - 1) / 2
print(f"rank {rank}/{world} on {os.environ.get('SLURMD_NODENAME')}: sum={value.item()} expected={expected}", flush=True)
assert value.item() == expected
dist.destroy_process_group()
