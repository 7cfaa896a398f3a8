#pragma once
// Module: named parameters, submodules, train/eval mode (after torch::nn::Module, without Impl/holder).
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "xgrad/autodiff.hpp"

namespace xgrad::nn {

template <class T>
class Module {
public:
    virtual ~Module() = default;
    Module() = default;
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;

    /// Records the module's computation on x's tape.
    virtual Var<T> forward(const Var<T>& x) = 0;
    Var<T> operator()(const Var<T>& x) { return forward(x); }
    /// Short description for messages and tape scopes, e.g. "Linear(784→256)".
    virtual std::string describe() const { return "Module"; }

    /// All parameters: the module's own (in registration order), then each child's, recursively, in
    /// registration order (PyTorch's order; the order of named_parameters() and of saved files).
    std::vector<Parameter<T>*> parameters();
    /// (dotted name, parameter), e.g. "0.weight", "fc1.bias".
    std::vector<std::pair<std::string, Parameter<T>*>> named_parameters();
    /// The parameter of that dotted name ("0.weight", "fc1.bias"); std::out_of_range naming it and
    /// listing the names there are otherwise.
    Parameter<T>& parameter(const std::string& name);
    /// The direct submodules with their names, in registration order.
    std::vector<std::pair<std::string, Module<T>*>> named_children();
    /// The direct submodule of that name; std::out_of_range naming it and listing the names there
    /// are otherwise. For a layer's own type, Sequential::at<M>(i).
    Module<T>& child(const std::string& name);
    /// Sets every parameter's gradient to zero in place.
    void zero_grad();
    /// Training mode (Dropout active) or evaluation mode, recursively.
    void train(bool on = true);
    void eval() { train(false); }
    bool is_training() const { return training_; }
    std::size_t num_parameters();

protected:
    Parameter<T>& register_parameter(const std::string& name, Tensor<T> value);
    template <class M>
    M& register_module(const std::string& name, std::unique_ptr<M> m)
    {
        if (!m) throw std::invalid_argument("register_module: module '" + name + "' is null");
        for (const auto& child : children_)
            if (child.first == name) throw std::logic_error("register_module: duplicate module name '" + name + "'");
        M& ref = *m;
        children_.emplace_back(name, std::move(m));
        return ref;
    }

private:
    void collect(const std::string& prefix, std::vector<std::pair<std::string, Parameter<T>*>>& out);
    // unique_ptr: Parameters must not move, tapes hold pointers to them during a step.
    std::vector<std::pair<std::string, std::unique_ptr<Parameter<T>>>> params_;
    std::vector<std::pair<std::string, std::unique_ptr<Module<T>>>> children_;
    bool training_ = true;
};

extern template class Module<float>;
extern template class Module<double>;

}  // namespace xgrad::nn
