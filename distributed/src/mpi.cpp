#include "xgrad/distributed/mpi.hpp"

#include <exception>
#include <iostream>

#include <fmt/core.h>

namespace xgrad::distributed {

Environment::Environment(int& argc, char**& argv)
{
    int provided = 0;
    check_mpi(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
}

Environment::~Environment()
{
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
}

namespace {
bool initialized()
{
    int on = 0, off = 0;
    MPI_Initialized(&on);
    MPI_Finalized(&off);
    return on && !off;
}
}  // namespace

int rank()
{
    int r = 0;
    if (initialized()) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int world_size()
{
    int n = 1;
    if (initialized()) MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
}

int run_or_abort(const std::function<int()>& body)
{
    std::string what;
    try {
        return body();
    } catch (const std::exception& e) {
        what = e.what();
    } catch (...) {
        what = "an exception that is not a std::exception";
    }
    std::cerr << fmt::format("xgrad::distributed: rank {} of {} failed: {}\n", rank(), world_size(), what) << std::flush;
    if (initialized()) MPI_Abort(MPI_COMM_WORLD, 1);  // ends every rank: none waits in a collective
    return 1;
}

void check_mpi(int code, const char* call)
{
    if (code == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) len = 0;
    throw MpiError(fmt::format("xgrad::distributed: rank {}: {} failed: {}", rank(), call, std::string(text, len)));
}

template <>
MPI_Datatype mpi_type<float>()
{
    return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>()
{
    return MPI_DOUBLE;
}

}  // namespace xgrad::distributed
