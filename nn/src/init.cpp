#include "xgrad/nn/init.hpp"

#include <cmath>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace xgrad::nn::init {

namespace {

/// A zero fan would make the bound 1/√0 = inf and fill the tensor with inf/NaN.
void check_fan(const char* fn, const char* what, std::size_t fan)
{
    if (fan == 0) throw std::invalid_argument(fmt::format("{}: {} must be at least 1, got 0", fn, what));
}

/// The generator of init::next_seed, behind a mutex: layers may be made on several threads.
struct SeedSource {
    std::mutex mutex;
    Rng rng{0};
};

SeedSource& seed_source()
{
    static SeedSource s;
    return s;
}

}  // namespace

void manual_seed(std::uint64_t seed)
{
    SeedSource& s = seed_source();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.rng.seed(seed);
}

std::uint64_t next_seed()
{
    SeedSource& s = seed_source();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.rng();
}

template <class T>
void uniform(Tensor<T>& w, double lo, double hi, Rng& rng)
{
    // std::uniform_real_distribution needs lo <= hi and a finite hi − lo (else undefined behaviour).
    if (!(std::isfinite(lo) && std::isfinite(hi) && lo <= hi && std::isfinite(hi - lo)))
        throw std::invalid_argument(fmt::format("uniform: bounds [{:g}, {:g}) must be finite, with lo <= hi and hi - lo finite",
                                                lo, hi));
    std::uniform_real_distribution<double> d(lo, hi);
    for (auto& v : w) v = T(d(rng));
}

template <class T>
void xavier_uniform(Tensor<T>& w, std::size_t fan_in, std::size_t fan_out, Rng& rng, double gain)
{
    if (fan_in + fan_out == 0)
        throw std::invalid_argument("xavier_uniform: fan_in + fan_out must be at least 1, got 0 + 0");
    if (!(std::isfinite(gain) && gain >= 0))
        throw std::invalid_argument(fmt::format("xavier_uniform: gain must be a finite number >= 0, got {:g}", gain));
    const double a = gain * std::sqrt(6.0 / double(fan_in + fan_out));
    uniform(w, -a, a, rng);
}

template <class T>
void kaiming_uniform(Tensor<T>& w, std::size_t fan_in, Rng& rng)
{
    check_fan("kaiming_uniform", "fan_in", fan_in);
    const double b = std::sqrt(6.0 / double(fan_in));
    uniform(w, -b, b, rng);
}

template <class T>
void kaiming_normal(Tensor<T>& w, std::size_t fan_in, Rng& rng)
{
    check_fan("kaiming_normal", "fan_in", fan_in);
    std::normal_distribution<double> d(0.0, std::sqrt(2.0 / double(fan_in)));
    for (auto& v : w) v = T(d(rng));
}

template <class T>
void normal(Tensor<T>& w, double mean, double std, Rng& rng)
{
    if (!std::isfinite(mean) || !std::isfinite(std) || std < 0)
        throw std::invalid_argument(fmt::format("init::normal: mean {} and std {} must be finite, std >= 0", mean, std));
    std::normal_distribution<double> d(mean, std);
    for (auto& v : w) v = T(d(rng));
}

template <class T>
void torch_default(Tensor<T>& w, std::size_t fan_in, Rng& rng)
{
    check_fan("torch_default", "fan_in", fan_in);
    const double b = 1.0 / std::sqrt(double(fan_in));
    uniform(w, -b, b, rng);
}

template <class T>
void constant(Tensor<T>& w, typename std::common_type<T>::type value)
{
    std::fill(w.begin(), w.end(), value);
}

#define XGRAD_INSTANTIATE(T)                                                                     \
    template void uniform(Tensor<T>&, double, double, Rng&);                                     \
    template void xavier_uniform(Tensor<T>&, std::size_t, std::size_t, Rng&, double);            \
    template void kaiming_uniform(Tensor<T>&, std::size_t, Rng&);                                \
    template void kaiming_normal(Tensor<T>&, std::size_t, Rng&);                                 \
    template void torch_default(Tensor<T>&, std::size_t, Rng&);                                  \
    template void normal(Tensor<T>&, double, double, Rng&);                                      \
    template void constant(Tensor<T>&, T);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::nn::init
