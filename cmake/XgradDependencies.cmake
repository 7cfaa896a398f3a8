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

# OpenBLAS for cblas_sgemm / cblas_dgemm and openblas_set_num_threads. Debian's default build keeps
# its own pthread pool beside libgomp's (oneDNN's and xgrad's): two pools of busy-waiting threads on
# the same cores (docs/performance.md, "Threads"). When Debian's OpenMP build is installed
# (libopenblas0-openmp, scripts/setup) xgrad links that one by full path: the directory goes into
# the RUNPATH, so the loader picks it without touching the system's alternatives. Same soname and
# API, so the pthread build's headers serve; without the package, the pthread build as before.
option(XGRAD_OPENBLAS_OPENMP "Link Debian's OpenMP build of OpenBLAS when installed" ON)
if(NOT TARGET xgrad::openblas)
  set(XGRAD_OPENBLAS_LIBRARY ${OpenBLAS_LIBRARIES})
  set(XGRAD_BLAS_THREADING "pthreads")
  if(XGRAD_OPENBLAS_OPENMP)
    find_file(XGRAD_OPENBLAS_OPENMP_LIBRARY libopenblas.so.0
      PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp /usr/lib/x86_64-linux-gnu/openblas-openmp
      NO_DEFAULT_PATH)
    if(XGRAD_OPENBLAS_OPENMP_LIBRARY)
      set(XGRAD_OPENBLAS_LIBRARY ${XGRAD_OPENBLAS_OPENMP_LIBRARY})
      set(XGRAD_BLAS_THREADING "OpenMP")
    endif()
  endif()
  add_library(xgrad::openblas INTERFACE IMPORTED)
  target_include_directories(xgrad::openblas INTERFACE ${OpenBLAS_INCLUDE_DIRS})
  target_link_libraries(xgrad::openblas INTERFACE ${XGRAD_OPENBLAS_LIBRARY})
  if(XGRAD_BLAS_THREADING STREQUAL "OpenMP")
    # kernels/gemm.hpp sends some float products to OpenBLAS only when it shares libgomp's pool
    target_compile_definitions(xgrad::openblas INTERFACE XGRAD_BLAS_OPENMP)
  endif()
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
