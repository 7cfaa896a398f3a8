#include "xgrad/nn/module.hpp"

#include <fmt/format.h>

namespace xgrad::nn {

template <class T>
Parameter<T>& Module<T>::register_parameter(const std::string& name, Tensor<T> value)
{
    for (const auto& [n, p] : params_)
        if (n == name) throw std::logic_error(fmt::format("register_parameter: duplicate parameter name '{}'", name));
    for (const auto& [n, b] : buffers_)
        if (n == name) throw std::logic_error(fmt::format("register_parameter: '{}' is already a buffer", name));
    params_.emplace_back(name, std::make_unique<Parameter<T>>(std::move(value), name));
    return *params_.back().second;
}

template <class T>
Tensor<T>& Module<T>::register_buffer(const std::string& name, Tensor<T> value)
{
    for (const auto& [n, b] : buffers_)
        if (n == name) throw std::logic_error(fmt::format("register_buffer: duplicate buffer name '{}'", name));
    for (const auto& [n, p] : params_)
        if (n == name) throw std::logic_error(fmt::format("register_buffer: '{}' is already a parameter", name));
    buffers_.emplace_back(name, std::make_unique<Tensor<T>>(std::move(value)));
    return *buffers_.back().second;
}

template <class T>
void Module<T>::collect(const std::string& prefix, std::vector<std::pair<std::string, Parameter<T>*>>& out)
{
    for (auto& [n, p] : params_) out.emplace_back(prefix + n, p.get());
    for (auto& [n, c] : children_) c->collect(prefix + n + ".", out);
}

template <class T>
void Module<T>::collect_buffers(const std::string& prefix, std::vector<std::pair<std::string, Tensor<T>*>>& out)
{
    for (auto& [n, b] : buffers_) out.emplace_back(prefix + n, b.get());
    for (auto& [n, c] : children_) c->collect_buffers(prefix + n + ".", out);
}

template <class T>
std::vector<std::pair<std::string, Parameter<T>*>> Module<T>::named_parameters(bool recurse)
{
    std::vector<std::pair<std::string, Parameter<T>*>> out;
    if (recurse)
        collect("", out);
    else
        for (auto& [n, p] : params_) out.emplace_back(n, p.get());
    return out;
}

template <class T>
std::vector<std::pair<std::string, Tensor<T>*>> Module<T>::named_buffers(bool recurse)
{
    std::vector<std::pair<std::string, Tensor<T>*>> out;
    if (recurse)
        collect_buffers("", out);
    else
        for (auto& [n, b] : buffers_) out.emplace_back(n, b.get());
    return out;
}

template <class T>
std::vector<Tensor<T>*> Module<T>::buffers(bool recurse)
{
    std::vector<Tensor<T>*> out;
    for (auto& [n, b] : named_buffers(recurse)) out.push_back(b);
    return out;
}

namespace {
/// "'x' not found; <what> are: a, b, c" for a failed lookup by name.
template <class Pairs>
std::out_of_range not_found(const char* who, const std::string& name, const Pairs& pairs, const char* what)
{
    std::string names;
    for (const auto& p : pairs) names += (names.empty() ? "" : ", ") + p.first;
    return std::out_of_range(
        fmt::format("{}: '{}' not found; {}: {}", who, name, what, names.empty() ? std::string("none") : names));
}
}  // namespace

template <class T>
Parameter<T>& Module<T>::parameter(const std::string& name)
{
    auto all = named_parameters();
    for (auto& [n, p] : all)
        if (n == name) return *p;
    throw not_found("Module::parameter", name, all, "the parameters are");
}

template <class T>
Tensor<T>& Module<T>::buffer(const std::string& name)
{
    auto all = named_buffers();
    for (auto& [n, b] : all)
        if (n == name) return *b;
    throw not_found("Module::buffer", name, all, "the buffers are");
}

template <class T>
std::vector<std::pair<std::string, Module<T>*>> Module<T>::named_children()
{
    std::vector<std::pair<std::string, Module<T>*>> out;
    for (auto& [n, c] : children_) out.emplace_back(n, c.get());
    return out;
}

template <class T>
Module<T>& Module<T>::child(const std::string& name)
{
    for (auto& [n, c] : children_)
        if (n == name) return *c;
    throw not_found("Module::child", name, children_, "the children are");
}

template <class T>
std::vector<Parameter<T>*> Module<T>::parameters(bool recurse)
{
    std::vector<Parameter<T>*> out;
    for (auto& [n, p] : named_parameters(recurse)) out.push_back(p);
    return out;
}

template <class T>
void Module<T>::zero_grad()
{
    for (auto* p : parameters()) p->zero_grad();
}

template <class T>
void Module<T>::train(bool on)
{
    training_ = on;
    for (auto& [n, c] : children_) c->train(on);
}

template <class T>
std::size_t Module<T>::num_parameters()
{
    std::size_t n = 0;
    for (auto* p : parameters()) n += p->size();
    return n;
}

template class Module<float>;
template class Module<double>;

}  // namespace xgrad::nn
