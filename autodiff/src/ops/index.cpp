// Flat gather and scatter-add: the pair of ops the recorded VJPs of max, pooling, gather and pick
// are written with. Each is the other's VJP.
#include <fmt/format.h>

#include "../op_util.hpp"

namespace xgrad::detail {

namespace {
void check_index(const char* op, const std::vector<std::size_t>& index, std::size_t bound)
{
    for (std::size_t i : index)
        if (i >= bound)
            throw std::out_of_range(fmt::format("xgrad: {}: flat index {} out of range for {} elements", op, i, bound));
}
}  // namespace

template <class T>
Var<T> take_flat(const Var<T>& x, const std::vector<std::size_t>& index, const Shape& shape)
{
    auto op = begin_op("take_flat", {x});
    const Tensor<T>& xv = x.value();
    if (shape_size(shape) != index.size())
        throw ShapeError(fmt::format("take_flat: {} indices for an output of shape {}", index.size(), shape_str(shape)));
    check_index("take_flat", index, xv.size());
    op.value().resize(shape);
    for (std::size_t i = 0; i < index.size(); ++i) op.value().data()[i] = xv.data()[index[i]];
    op.saved_index() = index;
    return op.finish_both([](auto& c) {  // dX.flat[index[i]] += G.flat[i]
        if constexpr (is_graph_backward_v<decltype(c)>) {
            c.accumulate(0, scatter_add_flat(c.grad(), c.saved_index(), c.input(0).shape()));
        } else {
            const InputGrad<T> dx = c.input_grad(0);
            if (!dx.accumulate) std::fill(dx.buffer->begin(), dx.buffer->end(), T(0));
            const std::vector<std::size_t>& idx = c.saved_index();
            for (std::size_t i = 0; i < idx.size(); ++i) dx.data()[idx[i]] += c.grad().data()[i];
        }
    });
}

template <class T>
Var<T> scatter_add_flat(const Var<T>& g, const std::vector<std::size_t>& index, const Shape& shape)
{
    auto op = begin_op("scatter_add_flat", {g});
    const Tensor<T>& gv = g.value();
    if (gv.size() != index.size())
        throw ShapeError(fmt::format("scatter_add_flat: {} indices for {} values", index.size(), gv.size()));
    check_index("scatter_add_flat", index, shape_size(shape));
    Tensor<T>& out = op.value();
    out.resize(shape);
    std::fill(out.begin(), out.end(), T(0));
    for (std::size_t i = 0; i < index.size(); ++i) out.data()[index[i]] += gv.data()[i];
    op.saved_index() = index;
    return op.finish_both([](auto& c) {  // dG.flat[i] = dY.flat[index[i]]
        if constexpr (is_graph_backward_v<decltype(c)>) {
            c.accumulate(0, take_flat(c.grad(), c.saved_index(), c.input(0).shape()));
        } else {
            const InputGrad<T> dg = c.input_grad(0);
            const std::vector<std::size_t>& idx = c.saved_index();
            for (std::size_t i = 0; i < idx.size(); ++i)
                dg.data()[i] = (dg.accumulate ? dg.data()[i] : T(0)) + c.grad().data()[idx[i]];
        }
    });
}

template Var<float> take_flat(const Var<float>&, const std::vector<std::size_t>&, const Shape&);
template Var<double> take_flat(const Var<double>&, const std::vector<std::size_t>&, const Shape&);
template Var<float> scatter_add_flat(const Var<float>&, const std::vector<std::size_t>&, const Shape&);
template Var<double> scatter_add_flat(const Var<double>&, const std::vector<std::size_t>&, const Shape&);

}  // namespace xgrad::detail
