#include "xgrad/node_check.hpp"

#include <cmath>
#include <random>
#include <sstream>

#include <fmt/core.h>

#include "xgrad/gradcheck.hpp"
#include "xgrad/op.hpp"
#include "tape_access.hpp"

namespace xgrad {


using detail::unravel;

std::string NodeCheckReport::summary() const
{
    std::ostringstream os;
    if (ok()) {
        os << fmt::format("check_nodes: all {} nodes agree with finite differences ({} elements checked)\n", nodes_checked,
                          elements_checked);
        return os.str();
    }
    const NodeFailure& f = failures.front();
    std::string ins;
    for (const auto& s : f.input_shapes) ins += (ins.empty() ? "" : ", ") + shape_str(s);
    os << fmt::format("check_nodes: {} of {} nodes FAIL. First: op '{}' at tape position #{}{}\n", failures.size(),
                      nodes_checked, f.op, f.position, f.scope.empty() ? "" : " (created in " + f.scope + ")");
    os << fmt::format("  inputs {} -> output {}; gradient of input {} at {}: backward gives {:.10g}, finite differences {:.10g}\n",
                      ins, shape_str(f.output_shape), f.input, shape_str(f.index), f.analytic, f.numeric);
    for (std::size_t k = 1; k < failures.size(); ++k)
        os << fmt::format("  also: '{}' #{} input {}\n", failures[k].op, failures[k].position, failures[k].input);
    return os.str();
}

NodeCheckReport check_nodes(const std::function<Var<double>(Tape<double>&)>& build, const NodeCheckOptions& o)
{
    using A = detail::TapeAccess<double>;
    NodeCheckReport report;
    Tape<double> tape, replay;
    build(tape);
    const auto n_nodes = std::uint32_t(tape.size());
    std::mt19937_64 rng(o.seed());

    for (std::uint32_t i = 0; i < n_nodes; ++i) {
        detail::Node<double>& n = A::node(tape, i);
        if (!n.backward_ || !n.requires_grad_) continue;
        ++report.nodes_checked;
        const Tensor<double> u = detail::random_cotangent(n.value().shape(), o.seed() + i);
        const std::vector<Tensor<double>> analytic = A::isolated_vjp(tape, i, u);

        // φ(δ) = <u, node i's output> when element e of its input k is moved by δ, nothing else.
        auto phi = [&](std::size_t k, std::size_t e, double delta) {
            double result = 0;
            double saved = 0;
            Tensor<double>* target = nullptr;
            replay.clear();
            A::set_op_hooks(replay,
                [&](std::uint32_t j) {
                    if (j != i) return;
                    if (std::string(A::node(replay, j).op_) != n.op_)
                        throw std::logic_error(fmt::format(
                            "check_nodes: the build function is not deterministic (node #{} was '{}', now '{}')", i,
                            n.op_, A::node(replay, j).op_));
                    target = &A::mutable_value(replay, A::input(replay, j, k));
                    saved = target->data()[e];
                    target->data()[e] = saved + delta;
                },
                [&](std::uint32_t j) {
                    if (j != i) return;
                    const Tensor<double>& y = A::node(replay, j).value();
                    for (std::size_t q = 0; q < y.size(); ++q) result += u.data()[q] * y.data()[q];
                    target->data()[e] = saved;  // only node i saw the perturbation
                });
            try {
                build(replay);
            } catch (...) {
                A::set_op_hooks(replay, nullptr, nullptr);
                throw;
            }
            A::set_op_hooks(replay, nullptr, nullptr);
            return result;
        };

        bool failed = false;
        for (std::uint32_t k = 0; k < n.input_count_ && !failed; ++k) {
            const detail::Node<double>& in = A::node(tape, A::input(tape, i, k));
            if (!in.requires_grad_) continue;
            const std::size_t size = in.value().size();
            std::vector<std::size_t> elems;
            if (size <= o.max_elements()) {
                for (std::size_t e = 0; e < size; ++e) elems.push_back(e);
            } else {
                std::uniform_int_distribution<std::size_t> pick(0, size - 1);
                for (std::size_t q = 0; q < o.max_elements(); ++q) elems.push_back(pick(rng));
            }
            for (std::size_t e : elems) {
                ++report.elements_checked;
                const double num = (phi(k, e, o.eps()) - phi(k, e, -o.eps())) / (2 * o.eps());
                const double ana = analytic[k].data()[e];
                if (!(std::abs(ana - num) <= o.atol() + o.rtol() * std::abs(num))) {
                    NodeFailure f;
                    f.position = i;
                    f.op = n.op_;
                    f.scope = tape.scope_at(i);
                    for (std::uint32_t q = 0; q < n.input_count_; ++q)
                        f.input_shapes.push_back(A::node(tape, A::input(tape, i, q)).value().shape());
                    f.output_shape = n.value().shape();
                    f.input = k;
                    f.index = unravel(e, in.value().shape());
                    f.analytic = ana;
                    f.numeric = num;
                    report.failures.push_back(std::move(f));
                    failed = true;
                    break;
                }
            }
        }
    }
    return report;
}

}  // namespace xgrad
