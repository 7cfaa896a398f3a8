#pragma once
// MPI set-up for xgrad::distributed: initialization, rank and size, and the one rule that keeps a
// failing job from hanging: a rank that throws aborts the whole job (MPI_Abort), naming itself.
#include <functional>
#include <stdexcept>
#include <string>

#include <mpi.h>

namespace xgrad::distributed {

/// An MPI call that failed (the communicators of this library return errors instead of aborting);
/// the message names the rank, the call and MPI's error string.
class MpiError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// MPI_Init_thread (MPI_THREAD_FUNNELED: only the main thread calls MPI) for the life of the
/// object, MPI_Finalize after. Make one, first thing in main().
class Environment {
public:
    Environment(int& argc, char**& argv);
    ~Environment();
    Environment(const Environment&) = delete;
    Environment& operator=(const Environment&) = delete;
};

/// This process's rank in MPI_COMM_WORLD (0 if MPI is not initialized).
int rank();
/// The number of processes in MPI_COMM_WORLD (1 if MPI is not initialized).
int world_size();

/// Runs `body` and returns its exit code. If it throws, prints
/// "xgrad::distributed: rank R of N failed: <what>" to stderr and calls MPI_Abort(MPI_COMM_WORLD, 1),
/// so the other ranks end at once instead of waiting forever in a collective.
int run_or_abort(const std::function<int()>& body);

/// Throws MpiError "xgrad::distributed: rank R: <call> failed: <MPI's error string>" unless code is MPI_SUCCESS.
void check_mpi(int code, const char* call);

/// MPI_FLOAT or MPI_DOUBLE.
template <class T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>();
template <>
MPI_Datatype mpi_type<double>();

}  // namespace xgrad::distributed
