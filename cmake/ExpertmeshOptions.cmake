# Compiler flags shared by every target. Shipped binaries never use -march=native: CPU kernels
# dispatch at run time (AVX2+FMA baseline, AVX-512 where the CPU has it).
find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  set(CMAKE_C_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
endif()

# Debug sections compressed with zlib (gdb, perf and addr2line read them as they are): a
# RelWithDebInfo test program is ~97% DWARF, ~180 MB, and the suite's ~80 of them filled 3.5 GB
# of a CI machine's disk; compressed, each is a third of that.
option(EXPERTMESH_COMPRESS_DEBUG "Compress the debug sections of objects and programs" ON)
if(EXPERTMESH_COMPRESS_DEBUG)
  include(CheckCXXCompilerFlag)
  include(CheckLinkerFlag)
  check_cxx_compiler_flag(-gz=zlib EXPERTMESH_CXX_HAS_GZ)
  check_linker_flag(CXX -gz=zlib EXPERTMESH_LINKER_HAS_GZ)
  if(EXPERTMESH_CXX_HAS_GZ AND EXPERTMESH_LINKER_HAS_GZ)
    add_compile_options($<$<COMPILE_LANGUAGE:C,CXX>:-gz=zlib>)
    add_link_options($<$<LINK_LANGUAGE:C,CXX>:-gz=zlib>)
  endif()
endif()

add_library(expertmesh_warnings INTERFACE)
target_compile_options(expertmesh_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers>)
if(EXPERTMESH_WERROR)
  target_compile_options(expertmesh_warnings INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
endif()
