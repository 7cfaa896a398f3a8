// A training job in which rank 1 fails at step 3 (tests/distributed/expect_abort.sh checks that the
// job ends quickly, non-zero, naming rank 1). usage: fault_worker throw|kill|shape
//   throw: rank 1 throws after its forward; run_or_abort aborts the job, naming the rank
//   kill:  rank 1 kills itself (SIGKILL) after its forward; mpiexec ends the others
//   shape: rank 1's model differs; every rank throws at construction
#include <csignal>
#include <iostream>
#include <stdexcept>
#include <string>

#include "xgrad/distributed.hpp"
#include "xgrad/nn.hpp"

using namespace xgrad;
namespace dist = xgrad::distributed;

int main(int argc, char** argv)
{
    dist::Environment env(argc, argv);
    const std::string mode = argc > 1 ? argv[1] : "";
    return dist::run_or_abort([&] {
        const bool odd = dist::rank() == 1;
        nn::MLP<double> model({32, odd && mode == "shape" ? 17u : 16u, 4}, nn::Activation::relu,
                              nn::Activation::identity, 1);
        dist::DistributedDataParallel<double> ddp(model);
        nn::SGD<double> opt(ddp.parameters(), 0.1);
        Tape<double> tape;
        const Tensor<double> x = rand_uniform<double>({8, 32}, unsigned(10 + dist::rank()));
        IndexTensor y = {0, 1, 2, 3, 0, 1, 2, 3};
        // Many steps: without the abort, rank 0 would wait in step 3's all-reduce forever.
        for (int step = 0; step < 100000; ++step) {
            tape.clear();
            opt.zero_grad();
            auto loss = cross_entropy(ddp(tape.borrow(x)), y);
            if (odd && step == 3) {
                if (mode == "throw") throw std::runtime_error("injected failure in step 3");
                if (mode == "kill") std::raise(SIGKILL);
            }
            tape.backward(loss);
            ddp.finish_gradient_synchronization();
            opt.step();
        }
        return 0;
    });
}
