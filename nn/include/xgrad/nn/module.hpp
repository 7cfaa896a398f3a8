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
    /// registration order (PyTorch's order; the order of named_parameters()). recurse = false: the
    /// module's own only.
    std::vector<Parameter<T>*> parameters(bool recurse = true);
    /// (dotted name, parameter), e.g. "0.weight", "fc1.bias".
    std::vector<std::pair<std::string, Parameter<T>*>> named_parameters(bool recurse = true);
    /// Buffers: state that is saved with the module but is not a parameter (no gradient, not in
    /// parameters(), untouched by optimizers), e.g. BatchNorm's running statistics. Same order and
    /// dotted names as the parameters. A weight file holds, as PyTorch's state_dict, each module's
    /// parameters, then its buffers, then each child's, recursively.
    std::vector<Tensor<T>*> buffers(bool recurse = true);
    std::vector<std::pair<std::string, Tensor<T>*>> named_buffers(bool recurse = true);
    /// The buffer of that dotted name ("0.running_mean"); std::out_of_range naming it and listing the
    /// names there are otherwise.
    Tensor<T>& buffer(const std::string& name);
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
    /// Registers a buffer (torch::nn::Module::register_buffer); std::logic_error if the name is
    /// taken by a parameter or a buffer. The reference stays valid for the module's life.
    Tensor<T>& register_buffer(const std::string& name, Tensor<T> value);
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
    void collect_buffers(const std::string& prefix, std::vector<std::pair<std::string, Tensor<T>*>>& out);
    // unique_ptr: Parameters must not move, tapes hold pointers to them during a step.
    std::vector<std::pair<std::string, std::unique_ptr<Parameter<T>>>> params_;
    // unique_ptr: layers keep references to their buffers
    std::vector<std::pair<std::string, std::unique_ptr<Tensor<T>>>> buffers_;
    std::vector<std::pair<std::string, std::unique_ptr<Module<T>>>> children_;
    bool training_ = true;
};

extern template class Module<float>;
extern template class Module<double>;

}  // namespace xgrad::nn
