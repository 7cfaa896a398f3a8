// Flat gather and scatter-add: the pair of ops the recorded VJPs of max, pooling, gather and pick
// are written with. Each is the other's VJP. And embedding, a row lookup whose recorded VJP they give.
#include <fmt/format.h>

#include "../op_util.hpp"
#include "xgrad/ops/shape.hpp"

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

namespace xgrad {

template <class T>
Var<T> embedding(const Var<T>& weight, const IndexTensor& indices, std::optional<std::int64_t> padding_idx)
{
    auto op = begin_op("embedding", {weight});
    const Tensor<T>& wv = weight.value();
    if (wv.dimension() != 2)
        throw ShapeError(fmt::format("embedding: weight {} and indices {}: the weight must be (num_embeddings, dim)",
                                     shape_str(wv.shape()), shape_str(indices.shape())));
    const std::size_t rows = wv.shape()[0], dim = wv.shape()[1];
    std::ptrdiff_t skip = -1;  // the padding row, or none
    if (padding_idx) {
        const std::int64_t p = *padding_idx, r = std::int64_t(rows);
        if (p < -r || p >= r)
            throw std::out_of_range(fmt::format("embedding: padding_idx {} is outside [-{},{}) for num_embeddings {}",
                                                p, rows, rows, rows));
        skip = std::ptrdiff_t(p < 0 ? p + r : p);
    }
    Shape out(indices.shape().begin(), indices.shape().end());
    out.push_back(dim);
    std::size_t total = 0;
    if (!checked_shape_size(out, total))
        throw ShapeError(fmt::format("embedding: weight {} and indices {}: the result has more elements than size_t "
                                     "can count", shape_str(wv.shape()), shape_str(indices.shape())));
    std::vector<std::size_t>& row = op.saved_index();  // the row each lookup read, for backward
    row.resize(indices.size());
    const Index* ip = indices.data();
    for (std::size_t e = 0; e < row.size(); ++e) {
        if (ip[e] < 0 || std::uint64_t(ip[e]) >= rows)
            throw std::out_of_range(fmt::format("embedding: index {} at flat position {} is outside [0,{}) "
                                                "(num_embeddings {})", ip[e], e, rows, rows));
        row[e] = std::size_t(ip[e]);
    }
    op.value().resize(out);
    T* q = op.value().data();
    for (std::size_t e = 0; e < row.size(); ++e) std::copy_n(wv.data() + row[e] * dim, dim, q + e * dim);
    return op.finish_both([dim, skip](auto& c) {
        // dW[r] += G[e] for each lookup e of row r ≠ padding_idx; rows never read get nothing
        const std::vector<std::size_t>& row = c.saved_index();
        if constexpr (is_graph_backward_v<decltype(c)>) {
            // recorded: scatter_add_flat of G (of its non-padding lookups, taken by take_flat) into W's shape
            std::vector<std::size_t> wpos, gpos;
            wpos.reserve(row.size() * dim);
            for (std::size_t e = 0; e < row.size(); ++e) {
                if (std::ptrdiff_t(row[e]) == skip) continue;
                for (std::size_t j = 0; j < dim; ++j) {
                    wpos.push_back(row[e] * dim + j);
                    if (skip >= 0) gpos.push_back(e * dim + j);
                }
            }
            if (skip < 0) {
                c.accumulate(0, detail::scatter_add_flat(c.grad(), wpos, c.input(0).shape()));
            } else {
                const Var<T> kept = detail::take_flat(c.grad(), gpos, Shape{gpos.size()});
                c.accumulate(0, detail::scatter_add_flat(kept, wpos, c.input(0).shape()));
            }
        } else {
            const InputGrad<T> dw = c.input_grad(0);
            if (!dw.accumulate) std::fill(dw.buffer->begin(), dw.buffer->end(), T(0));
            const T* g = c.grad().data();
            T* d = dw.data();
            for (std::size_t e = 0; e < row.size(); ++e) {
                if (std::ptrdiff_t(row[e]) == skip) continue;
                T* dr = d + row[e] * dim;
                const T* gr = g + e * dim;
                for (std::size_t j = 0; j < dim; ++j) dr[j] += gr[j];
            }
        }
    });
}

template Var<float> embedding(const Var<float>&, const IndexTensor&, std::optional<std::int64_t>);
template Var<double> embedding(const Var<double>&, const IndexTensor&, std::optional<std::int64_t>);

}  // namespace xgrad
