#pragma once
#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace xgrad::detail {

/// An op's vector-Jacobian product, stored in the node without allocating (std::function allocates
/// above 16 bytes of captures; larger closures fall back to the heap here). One object answers two
/// calls: with a First& (the plain sweep, tensors in and out) and, optionally, with a Second& (the
/// recorded sweep of create_graph, Vars in and out). Move-only, type-erased.
template <class First, class Second, std::size_t Capacity>
class VjpClosure {
public:
    VjpClosure() = default;
    VjpClosure(const VjpClosure&) = delete;
    VjpClosure& operator=(const VjpClosure&) = delete;
    ~VjpClosure() { reset(); }

    /// A closure for the plain sweep only.
    template <class F>
    void emplace(F&& f)
    {
        store<false>(std::forward<F>(f));
    }
    /// A closure callable with both First& and Second& (e.g. a lambda taking `auto&`).
    template <class F>
    void emplace_both(F&& f)
    {
        store<true>(std::forward<F>(f));
    }

    void reset() noexcept
    {
        if (destroy_) destroy_(buf_);
        first_ = nullptr;
        second_ = nullptr;
        destroy_ = nullptr;
    }

    explicit operator bool() const noexcept { return first_ != nullptr; }
    bool has_second() const noexcept { return second_ != nullptr; }
    void operator()(First& a) { first_(buf_, a); }
    void operator()(Second& b) { second_(buf_, b); }

private:
    template <class D>
    static constexpr bool inline_ok = sizeof(D) <= Capacity && alignof(D) <= alignof(std::max_align_t)
                                      && std::is_nothrow_move_constructible_v<D>;
    template <class D>
    static D& get(void* p)
    {
        if constexpr (inline_ok<D>)
            return *static_cast<D*>(p);
        else
            return **static_cast<D**>(p);
    }

    template <bool Both, class F>
    void store(F&& f)
    {
        using D = std::decay_t<F>;
        reset();
        if constexpr (inline_ok<D>) {
            ::new (static_cast<void*>(buf_)) D(std::forward<F>(f));
            destroy_ = [](void* p) { static_cast<D*>(p)->~D(); };
        } else {
            ::new (static_cast<void*>(buf_)) D*(new D(std::forward<F>(f)));
            destroy_ = [](void* p) { delete *static_cast<D**>(p); };
        }
        first_ = [](void* p, First& a) { get<D>(p)(a); };
        if constexpr (Both) second_ = [](void* p, Second& b) { get<D>(p)(b); };
    }

    alignas(std::max_align_t) unsigned char buf_[Capacity];
    void (*first_)(void*, First&) = nullptr;
    void (*second_)(void*, Second&) = nullptr;
    void (*destroy_)(void*) = nullptr;
};

}  // namespace xgrad::detail
