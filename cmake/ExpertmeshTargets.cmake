# Helpers so every library, test and benchmark is declared the same way.

# expertmesh_library(NAME <target> SOURCES ... [DEPS ...])
# Include paths are rooted at the source tree: #include "model/safetensors/reader.h".
function(expertmesh_library)
  cmake_parse_arguments(ARG "" "NAME" "SOURCES;DEPS" ${ARGN})
  add_library(${ARG_NAME} STATIC ${ARG_SOURCES})
  target_include_directories(${ARG_NAME} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_link_libraries(${ARG_NAME} PUBLIC ${ARG_DEPS} PRIVATE expertmesh_warnings)
endfunction()

# expertmesh_test(NAME <target> SOURCES ... [DEPS ...] [LABELS ...])
# Each test binary is a GoogleTest program; its cases are registered in CTest one by one.
# Tests find committed data through EXPERTMESH_SOURCE_DIR and scratch space through
# EXPERTMESH_BINARY_DIR.
function(expertmesh_test)
  cmake_parse_arguments(ARG "" "NAME" "SOURCES;DEPS;LABELS" ${ARGN})
  if(NOT TARGET expertmesh_test_main)
    # One main for every test binary (tests/util/test_main.cc), compiled once.
    add_library(expertmesh_test_main STATIC ${PROJECT_SOURCE_DIR}/tests/util/test_main.cc)
    target_link_libraries(expertmesh_test_main PUBLIC GTest::gtest PRIVATE expertmesh_warnings)
  endif()
  add_executable(${ARG_NAME} ${ARG_SOURCES})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock
                                            expertmesh_test_main expertmesh_warnings)
  target_include_directories(${ARG_NAME} PRIVATE ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_compile_definitions(${ARG_NAME} PRIVATE
    EXPERTMESH_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    EXPERTMESH_BINARY_DIR="${PROJECT_BINARY_DIR}")
  set(properties
    # A GTEST_SKIP() (e.g. no GPU) shows as "Skipped" in CTest, never as passed.
    SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]")
  if(ARG_LABELS)
    list(APPEND properties LABELS "${ARG_LABELS}")
  endif()
  gtest_discover_tests(${ARG_NAME}
    DISCOVERY_MODE PRE_TEST
    WORKING_DIRECTORY ${PROJECT_BINARY_DIR}
    PROPERTIES ${properties})
endfunction()

# expertmesh_benchmark(NAME <target> SOURCES ... [DEPS ...])
function(expertmesh_benchmark)
  cmake_parse_arguments(ARG "" "NAME" "SOURCES;DEPS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SOURCES})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} benchmark::benchmark expertmesh_warnings)
  target_include_directories(${ARG_NAME} PRIVATE ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_compile_definitions(${ARG_NAME} PRIVATE EXPERTMESH_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
endfunction()
