#pragma once
// xgrad::distributed: data-parallel training on MPI (target xgrad::distributed, docs/distributed.md).
#include "xgrad/distributed/data_parallel.hpp"
#include "xgrad/distributed/mpi.hpp"
#include "xgrad/distributed/sampler.hpp"
