# Dependencies of xgrad, shared by the build and by the installed package config.
include(CMakeFindDependencyMacro)
find_dependency(xtl)
find_dependency(xsimd)
find_dependency(xtensor)
find_dependency(OpenBLAS)

# SIMD flags are part of xgrad's ABI: with XTENSOR_USE_XSIMD, xtensor's allocator alignment depends
# on the target architecture, so every translation unit that sees xgrad's tensors must agree.
# x86-64-v3 = AVX2 + FMA: what xsimd 8 uses well, on every x86 machine since 2015.
if(NOT TARGET xgrad::simd)
  add_library(xgrad::simd INTERFACE IMPORTED)
  target_compile_definitions(xgrad::simd INTERFACE XTENSOR_USE_XSIMD)
  target_compile_options(xgrad::simd INTERFACE -march=x86-64-v3 -mtune=native)
  target_link_libraries(xgrad::simd INTERFACE xtensor xsimd)
endif()

# OpenBLAS (pthreads build) for cblas_sgemm / cblas_dgemm and openblas_set_num_threads.
if(NOT TARGET xgrad::openblas)
  add_library(xgrad::openblas INTERFACE IMPORTED)
  target_include_directories(xgrad::openblas INTERFACE ${OpenBLAS_INCLUDE_DIRS})
  target_link_libraries(xgrad::openblas INTERFACE ${OpenBLAS_LIBRARIES})
endif()

# Single-precision GEMM: oneDNN's dnnl_sgemm (AVX-512 kernels, about twice OpenBLAS's sgemm on
# this machine, see docs/performance.md) when libdnnl is installed and XGRAD_WITH_DNNL is on;
# OpenBLAS otherwise. Double precision always uses OpenBLAS. Found by hand: Debian's dnnl config
# drags in OpenCL, which xgrad does not use.
if(NOT DEFINED XGRAD_WITH_DNNL)
  set(XGRAD_WITH_DNNL ON)
endif()
if(NOT TARGET xgrad::blas)
  add_library(xgrad::blas INTERFACE IMPORTED)
  target_link_libraries(xgrad::blas INTERFACE xgrad::openblas)
  if(XGRAD_WITH_DNNL)
    find_library(XGRAD_DNNL_LIBRARY dnnl)
    find_path(XGRAD_DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.h)
    if(XGRAD_DNNL_LIBRARY AND XGRAD_DNNL_INCLUDE_DIR)
      target_link_libraries(xgrad::blas INTERFACE ${XGRAD_DNNL_LIBRARY})
      target_include_directories(xgrad::blas INTERFACE ${XGRAD_DNNL_INCLUDE_DIR})
      target_compile_definitions(xgrad::blas INTERFACE XGRAD_USE_DNNL)
      set(XGRAD_SGEMM "oneDNN (dnnl_sgemm)")
    else()
      set(XGRAD_SGEMM "OpenBLAS (libdnnl not found)")
    endif()
  else()
    set(XGRAD_SGEMM "OpenBLAS")
  endif()
endif()
