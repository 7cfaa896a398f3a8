#include "xgrad/nn/init.hpp"

#include <cmath>

namespace xgrad::nn::init {

template <class T>
void uniform(Tensor<T>& w, double lo, double hi, Rng& rng)
{
    std::uniform_real_distribution<double> d(lo, hi);
    for (auto& v : w) v = T(d(rng));
}

template <class T>
void xavier_uniform(Tensor<T>& w, std::size_t fan_in, std::size_t fan_out, Rng& rng, double gain)
{
    const double a = gain * std::sqrt(6.0 / double(fan_in + fan_out));
    uniform(w, -a, a, rng);
}

template <class T>
void kaiming_uniform(Tensor<T>& w, std::size_t fan_in, Rng& rng)
{
    const double b = std::sqrt(6.0 / double(fan_in));
    uniform(w, -b, b, rng);
}

template <class T>
void kaiming_normal(Tensor<T>& w, std::size_t fan_in, Rng& rng)
{
    std::normal_distribution<double> d(0.0, std::sqrt(2.0 / double(fan_in)));
    for (auto& v : w) v = T(d(rng));
}

template <class T>
void torch_default(Tensor<T>& w, std::size_t fan_in, Rng& rng)
{
    const double b = 1.0 / std::sqrt(double(fan_in));
    uniform(w, -b, b, rng);
}

template <class T>
void constant(Tensor<T>& w, T value)
{
    std::fill(w.begin(), w.end(), value);
}

#define XGRAD_INSTANTIATE(T)                                                                     \
    template void uniform(Tensor<T>&, double, double, Rng&);                                     \
    template void xavier_uniform(Tensor<T>&, std::size_t, std::size_t, Rng&, double);            \
    template void kaiming_uniform(Tensor<T>&, std::size_t, Rng&);                                \
    template void kaiming_normal(Tensor<T>&, std::size_t, Rng&);                                 \
    template void torch_default(Tensor<T>&, std::size_t, Rng&);                                  \
    template void constant(Tensor<T>&, T);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::nn::init
