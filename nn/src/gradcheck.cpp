#include "xgrad/nn/gradcheck.hpp"

#include <fmt/format.h>

#include <stdexcept>

namespace xgrad::nn {

GradcheckReport gradcheck_module(Module<double>& module, const Tensor<double>& x,
                                 const std::function<Var<double>(const Var<double>&)>& loss,
                                 const GradcheckOptions& options)
{
    Tape<double> tape;
    auto named = module.named_parameters();
    Tensor<double> input = x;
    auto run = [&](bool grad) {
        tape.clear();
        auto xv = grad ? tape.variable(input) : tape.constant(input);
        auto y = module(xv);
        return std::make_pair(xv, loss ? loss(y) : y);
    };
    module.zero_grad();
    auto [xv, y] = run(true);
    const std::string output_op = y.op();
    const Tensor<double> u = detail::random_cotangent(y.shape(), options.seed());
    tape.backward(y, u);
    std::vector<Tensor<double>> analytic;
    std::vector<Tensor<double>*> values;
    std::vector<std::string> names;
    for (auto& [name, p] : named) {
        analytic.push_back(p->grad());
        values.push_back(&p->value());
        names.push_back(name);
    }
    analytic.push_back(xv.grad());
    values.push_back(&input);
    names.push_back("input");
    auto phi = [&]() {
        NoGradGuard<double> ng(tape);
        const Tensor<double>& out = run(false).second.value();
        double s = 0;
        for (std::size_t i = 0; i < out.size(); ++i) s += u.data()[i] * out.data()[i];
        return s;
    };
    GradcheckReport r = detail::finite_difference_report(values, analytic, names, phi, options);
    r.output_op = output_op;
    tape.clear();
    module.zero_grad();
    return r;
}

GradcheckReport gradcheck_module(Module<double>& module, const Tensor<double>& x, const GradcheckOptions& options)
{
    return gradcheck_module(module, x, nullptr, options);
}

GradcheckReport gradcheck_module(Module<float>& module, Module<double>& twin, const Tensor<float>& x,
                                 const std::function<Var<double>(const Var<double>&)>& loss,
                                 const GradcheckOptions& options)
{
    const auto from = module.named_parameters();
    const auto to = twin.named_parameters();
    if (from.size() != to.size())
        throw std::invalid_argument(fmt::format("gradcheck_module: {} has {} parameters, its double twin {} has {}",
                                                module.describe(), from.size(), twin.describe(), to.size()));
    for (std::size_t i = 0; i < from.size(); ++i) {
        const auto& [name, p] = from[i];
        const auto& [twin_name, q] = to[i];
        if (name != twin_name || p->shape() != q->shape())
            throw std::invalid_argument(fmt::format(
                "gradcheck_module: parameter {} is '{}' {} in the float module but '{}' {} in its double twin", i, name,
                shape_str(p->shape()), twin_name, shape_str(q->shape())));
    }
    for (std::size_t i = 0; i < from.size(); ++i) to[i].second->value() = xt::cast<double>(from[i].second->value());
    const Tensor<double> xd = xt::cast<double>(x);
    return gradcheck_module(twin, xd, loss, options);
}

}  // namespace xgrad::nn
