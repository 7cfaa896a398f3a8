// The LeNet example on Fashion-MNIST (--dataset mnist for digits). See common/lenet_main.hpp.
#include "common/lenet_main.hpp"

int main(int argc, char** argv)
{
    return xgrad::examples::lenet_main(argc, argv, "fashion_mnist",
                                       "Fashion-MNIST: LeNet-5 style CNN, softmax cross-entropy", "fashion");
}
