// The GPT-2 "ByteLevel" alphabet that Hugging Face byte-level BPE tokenizers use: every byte is
// shown as one printable Unicode character (printable ASCII and Latin-1 bytes as themselves, the
// rest shifted to U+0100..U+0143), so vocab and merges are readable JSON strings.
#ifndef EXPERTMESH_TOOLS_MAKE_MODEL_BYTE_LEVEL_H_
#define EXPERTMESH_TOOLS_MAKE_MODEL_BYTE_LEVEL_H_

#include <array>
#include <string>
#include <string_view>

namespace expertmesh::make_model {

// The UTF-8 text of the character standing for each byte value.
const std::array<std::string, 256>& ByteLevelAlphabet();

// Maps every byte of `bytes` to its ByteLevel character.
std::string ByteLevelEncode(std::string_view bytes);

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_BYTE_LEVEL_H_
