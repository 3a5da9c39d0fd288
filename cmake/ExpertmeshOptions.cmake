# Compiler flags shared by every target. Shipped binaries never use -march=native: CPU kernels
# dispatch at run time (AVX2+FMA baseline, AVX-512 where the CPU has it).
find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  set(CMAKE_C_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
endif()

add_library(expertmesh_warnings INTERFACE)
target_compile_options(expertmesh_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers>)
if(EXPERTMESH_WERROR)
  target_compile_options(expertmesh_warnings INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
endif()
