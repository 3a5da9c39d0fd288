// The GPT-2 byte-level alphabet: every byte maps to one printable Unicode character, so BPE
// vocabularies can be stored as JSON strings. Tokens are stored in that alphabet in tokenizer.json.
#ifndef EXPERTMESH_MODEL_TOKENIZER_BYTE_LEVEL_H_
#define EXPERTMESH_MODEL_TOKENIZER_BYTE_LEVEL_H_

#include <array>
#include <string>
#include <string_view>

namespace expertmesh::tokenizer {

// UTF-8 text of the byte-level character that stands for byte `b` ("Ġ" for ' ').
const std::string& ByteToChar(unsigned char b);

// Maps the byte-level text `token` back to raw bytes and appends them to `out`. Like HF's
// ByteLevel decoder, a token containing any character outside the alphabet is appended
// unchanged (its own UTF-8 bytes). Returns false in that case.
bool AppendByteLevelDecoded(std::string_view token, std::string* out);

// Byte-level encoding of raw bytes ("hello world" -> "helloĠworld").
std::string ByteLevelEncode(std::string_view bytes);

}  // namespace expertmesh::tokenizer

#endif  // EXPERTMESH_MODEL_TOKENIZER_BYTE_LEVEL_H_
