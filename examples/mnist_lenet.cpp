// LeNet-5 style CNN on MNIST (≥ 99% test accuracy with the defaults). See common/lenet_main.hpp.
#include "common/lenet_main.hpp"

int main(int argc, char** argv)
{
    return xgrad::examples::lenet_main(argc, argv, "mnist_lenet", "MNIST: LeNet-5 style CNN, softmax cross-entropy",
                                       "mnist");
}
