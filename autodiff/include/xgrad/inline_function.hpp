#pragma once
#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace xgrad::detail {

/// A move-only type-erased callable with inline storage, so recording an op's backward closure
/// does not allocate (std::function allocates above 16 bytes of captures). Larger closures fall
/// back to the heap.
template <class Sig, std::size_t Capacity = 64>
class InlineFunction;

template <class R, class... Args, std::size_t Capacity>
class InlineFunction<R(Args...), Capacity> {
public:
    InlineFunction() = default;
    InlineFunction(const InlineFunction&) = delete;
    InlineFunction& operator=(const InlineFunction&) = delete;
    ~InlineFunction() { reset(); }

    template <class F>
    void emplace(F&& f)
    {
        using D = std::decay_t<F>;
        reset();
        if constexpr (sizeof(D) <= Capacity && alignof(D) <= alignof(std::max_align_t)
                      && std::is_nothrow_move_constructible_v<D>) {
            ::new (static_cast<void*>(buf_)) D(std::forward<F>(f));
            invoke_ = [](void* p, Args... a) -> R { return (*static_cast<D*>(p))(std::forward<Args>(a)...); };
            destroy_ = [](void* p) { static_cast<D*>(p)->~D(); };
        } else {
            D* heap = new D(std::forward<F>(f));
            ::new (static_cast<void*>(buf_)) D*(heap);
            invoke_ = [](void* p, Args... a) -> R { return (**static_cast<D**>(p))(std::forward<Args>(a)...); };
            destroy_ = [](void* p) { delete *static_cast<D**>(p); };
        }
    }

    void reset() noexcept
    {
        if (destroy_) destroy_(buf_);
        invoke_ = nullptr;
        destroy_ = nullptr;
    }

    explicit operator bool() const noexcept { return invoke_ != nullptr; }
    R operator()(Args... a) { return invoke_(buf_, std::forward<Args>(a)...); }

private:
    alignas(std::max_align_t) unsigned char buf_[Capacity];
    R (*invoke_)(void*, Args...) = nullptr;
    void (*destroy_)(void*) = nullptr;
};

}  // namespace xgrad::detail
