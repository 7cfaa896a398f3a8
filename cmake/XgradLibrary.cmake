# xgrad_add_library(<name> <export name> SOURCES ...): one installed, exported shared library of
# xgrad (autodiff, nn, reference): alias xgrad::<export name>, versioned soname, include/ as its
# public header directory (installed), warnings on. Callers add their own link libraries.
include_guard(GLOBAL)
function(xgrad_add_library name export_name)
  cmake_parse_arguments(L "" "" "SOURCES" ${ARGN})
  add_library(${name} SHARED ${L_SOURCES})
  add_library(xgrad::${export_name} ALIAS ${name})
  set_target_properties(${name} PROPERTIES EXPORT_NAME ${export_name} OUTPUT_NAME ${name}
    VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
  target_include_directories(${name} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_compile_options(${name} PRIVATE -Wall -Wextra)
  install(TARGETS ${name} EXPORT xgradTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endfunction()
