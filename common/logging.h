// Logging goes through spdlog (compiled library). Kept in one header so that CUDA sources,
// which cannot include fmt 9 under C++20, never see it.
#ifndef EXPERTMESH_COMMON_LOGGING_H_
#define EXPERTMESH_COMMON_LOGGING_H_

#include "spdlog/spdlog.h"

#define EM_LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define EM_LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define EM_LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)
#define EM_LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)

#endif  // EXPERTMESH_COMMON_LOGGING_H_
