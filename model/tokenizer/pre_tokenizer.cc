#include "model/tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/tokenizer/normalizer.h"
#include "model/tokenizer/scratch.h"
#include "model/tokenizer/utf8.h"

namespace expertmesh::tokenizer {
namespace {

using nlohmann::json;

// The GPT-2 word pattern that HF's ByteLevel pre-tokenizer applies when use_regex is true.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

absl::StatusOr<bool> OptionalBool(const json& spec, const char* key, bool fallback,
                                  std::string_view where) {
  if (!spec.contains(key) || spec[key].is_null()) return fallback;
  if (!spec[key].is_boolean()) {
    return absl::InvalidArgumentError(
        absl::StrCat(AbslView(where), ": \"", key, "\" must be a boolean"));
  }
  return spec[key].get<bool>();
}

absl::StatusOr<SplitBehavior> ParseBehavior(const json& spec) {
  if (!spec.contains("behavior") || !spec["behavior"].is_string()) {
    return absl::InvalidArgumentError("pre_tokenizer Split: \"behavior\" must be a string");
  }
  const std::string name = spec["behavior"].get<std::string>();
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(
      absl::StrCat("pre_tokenizer Split: unknown behavior \"", name, "\""));
}

struct Range {
  size_t begin, end;
  bool is_match;
};

}  // namespace

absl::Status PreTokenizer::AddSteps(const json& spec, std::vector<Step>* steps) {
  if (!spec.is_object() || !spec.contains("type") || !spec["type"].is_string()) {
    return absl::InvalidArgumentError("pre_tokenizer: expected an object with a string \"type\"");
  }
  const std::string type = spec["type"].get<std::string>();
  if (type == "Sequence") {
    if (!spec.contains("pretokenizers") || !spec["pretokenizers"].is_array()) {
      return absl::InvalidArgumentError(
          "pre_tokenizer Sequence: \"pretokenizers\" must be an array");
    }
    for (const json& item : spec["pretokenizers"]) RETURN_IF_ERROR(AddSteps(item, steps));
    return absl::OkStatus();
  }
  Step step;
  if (type == "Split") {
    step.kind = Step::Kind::kSplit;
    if (!spec.contains("pattern")) {
      return absl::InvalidArgumentError("pre_tokenizer Split: missing \"pattern\"");
    }
    ASSIGN_OR_RETURN(step.regex, PatternFromJson(spec["pattern"], "pre_tokenizer Split"));
    ASSIGN_OR_RETURN(step.behavior, ParseBehavior(spec));
    ASSIGN_OR_RETURN(step.invert, OptionalBool(spec, "invert", false, "pre_tokenizer Split"));
  } else if (type == "ByteLevel") {
    step.kind = Step::Kind::kByteLevel;
    ASSIGN_OR_RETURN(step.add_prefix_space,
                     OptionalBool(spec, "add_prefix_space", true, "pre_tokenizer ByteLevel"));
    ASSIGN_OR_RETURN(bool use_regex,
                     OptionalBool(spec, "use_regex", true, "pre_tokenizer ByteLevel"));
    if (use_regex) {
      ASSIGN_OR_RETURN(step.regex, Regex::Compile(kGpt2Pattern));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "pre_tokenizer type \"", type, "\" is not supported (Split, ByteLevel, Sequence)"));
  }
  steps->push_back(std::move(step));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::FromJson(const json& spec) {
  auto pre = std::unique_ptr<PreTokenizer>(new PreTokenizer());
  if (spec.is_null()) {
    return absl::InvalidArgumentError(
        "pre_tokenizer is null: only byte-level BPE (a ByteLevel pre-tokenizer) is supported");
  }
  RETURN_IF_ERROR(AddSteps(spec, &pre->steps_));
  for (size_t i = 0; i < pre->steps_.size(); ++i) {
    const bool byte_level = pre->steps_[i].kind == Step::Kind::kByteLevel;
    if (byte_level != (i + 1 == pre->steps_.size())) {
      return absl::InvalidArgumentError(
          "pre_tokenizer: exactly one ByteLevel step is required and it must come last "
          "(only byte-level BPE is supported)");
    }
  }
  return pre;
}

absl::Status PreTokenizer::ApplyRegex(const Step& step, std::string_view piece,
                                      std::vector<std::string_view>* out) const {
  thread_local std::vector<std::pair<size_t, size_t>> matches;
  thread_local std::vector<Range> ranges;
  thread_local std::vector<Range> merged;
  const TrimScratchOnExit trim_matches(matches);
  const TrimScratchOnExit trim_ranges(ranges);
  const TrimScratchOnExit trim_merged(merged);
  matches.clear();
  RETURN_IF_ERROR(step.regex->FindAll(piece, &matches));
  // Cover the piece with alternating gap / match ranges, as HF's Pattern::find_matches does.
  ranges.clear();
  size_t prev = 0;
  for (const auto& [begin, end] : matches) {
    if (begin > prev) ranges.push_back({prev, begin, false});
    ranges.push_back({begin, end, true});
    prev = end;
  }
  if (prev < piece.size()) ranges.push_back({prev, piece.size(), false});
  if (step.invert) {
    for (Range& r : ranges) r.is_match = !r.is_match;
  }

  merged.clear();
  bool previous_match = false;
  switch (step.behavior) {
    case SplitBehavior::kIsolated:
      merged = ranges;
      for (Range& r : merged) r.is_match = false;
      break;
    case SplitBehavior::kRemoved:
      for (const Range& r : ranges) {
        if (!r.is_match) merged.push_back(r);
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Range& r : ranges) {
        if (r.is_match && !previous_match && !merged.empty()) {
          merged.back().end = r.end;
        } else {
          merged.push_back({r.begin, r.end, false});
        }
        previous_match = r.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (size_t i = ranges.size(); i-- > 0;) {
        const Range& r = ranges[i];
        if (r.is_match && !previous_match && !merged.empty()) {
          merged.back().begin = r.begin;
        } else {
          merged.push_back({r.begin, r.end, false});
        }
        previous_match = r.is_match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    case SplitBehavior::kContiguous:
      for (size_t i = 0; i < ranges.size(); ++i) {
        const Range& r = ranges[i];
        if (i > 0 && r.is_match == previous_match) {
          merged.back().end = r.end;
        } else {
          merged.push_back({r.begin, r.end, false});
        }
        previous_match = r.is_match;
      }
      break;
  }
  for (const Range& r : merged) {
    if (r.end > r.begin) out->push_back(piece.substr(r.begin, r.end - r.begin));
  }
  return absl::OkStatus();
}

absl::Status PreTokenizer::Split(std::string_view text, std::vector<std::string_view>* words,
                                 std::deque<std::string>* storage) const {
  thread_local std::vector<std::string_view> scratch;
  const TrimScratchOnExit trim_scratch(scratch);
  words->clear();
  if (text.empty()) return absl::OkStatus();
  words->push_back(text);
  for (const Step& step : steps_) {
    scratch.clear();
    for (std::string_view piece : *words) {
      if (step.kind == Step::Kind::kByteLevel && step.add_prefix_space &&
          (piece.empty() || piece.front() != ' ')) {
        storage->push_back(absl::StrCat(" ", AbslView(piece)));
        piece = storage->back();
      }
      if (step.regex) {
        RETURN_IF_ERROR(ApplyRegex(step, piece, &scratch));
      } else {
        scratch.push_back(piece);
      }
    }
    words->swap(scratch);
  }
  return absl::OkStatus();
}

}  // namespace expertmesh::tokenizer
