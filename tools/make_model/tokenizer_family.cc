#include "tools/make_model/tokenizer_family.h"

#include "tools/make_model/pretokenizer.h"

namespace expertmesh::make_model {
namespace {

// Llama 3 instruct: header-delimited turns, each closed by <|eot_id|>.
constexpr char kLlama3Template[] =
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
    "message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}";

// Qwen (ChatML) with the default system turn that Qwen2 instruct models add.
constexpr char kQwenTemplate[] =
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}";

// DeepSeek-V3: system text first, then <｜User｜> / <｜Assistant｜> turns.
constexpr char kDeepseekV3Template[] =
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{{- message['content'] }}"
    "{%- elif message['role'] == 'user' %}{{- '<｜User｜>' + message['content'] }}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- '<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<｜Assistant｜>' }}{%- endif %}";

// DeepSeek-V2 chat: plain "User: ... \n\nAssistant: ..." turns.
constexpr char kDeepseekV2Template[] =
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{{- message['content'] + '\\n\\n' }}"
    "{%- elif message['role'] == 'user' %}{{- 'User: ' + message['content'] + '\\n\\n' }}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- 'Assistant: ' + message['content'] + eos_token }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'Assistant:' }}{%- endif %}";

// Mixtral instruct: [INST] ... [/INST] around user turns; a system message is prepended to the
// first user turn, as Mistral's own template does.
constexpr char kMixtralTemplate[] =
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}"
    "{%- if loop.index0 == 1 and messages[0]['role'] == 'system' %}"
    "{{- '[INST] ' + messages[0]['content'] + '\\n\\n' + message['content'] + ' [/INST]' }}"
    "{%- else %}{{- '[INST] ' + message['content'] + ' [/INST]' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}{{- message['content'] + eos_token }}"
    "{%- endif %}"
    "{%- endfor %}";

TokenizerFamily Llama3() {
  TokenizerFamily f;
  f.name = "llama3";
  f.pattern = kLlama3Pattern;
  f.special_tokens = {
      "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
      "<|eot_id|>",        "<|eom_id|>",      "<|python_tag|>",      "<|finetune_right_pad_id|>"};
  f.bos_token = "<|begin_of_text|>";
  f.eos_token = "<|eot_id|>";
  f.pad_token = "<|finetune_right_pad_id|>";
  f.stop_tokens = {"<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"};
  f.add_bos = true;
  f.chat_template = kLlama3Template;
  return f;
}

TokenizerFamily Qwen() {
  TokenizerFamily f;
  f.name = "qwen";
  f.pattern = kQwen2Pattern;
  f.nfc = true;
  f.special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  f.eos_token = "<|im_end|>";
  f.pad_token = "<|endoftext|>";
  f.stop_tokens = {"<|im_end|>", "<|endoftext|>"};
  f.add_bos = false;
  f.chat_template = kQwenTemplate;
  return f;
}

TokenizerFamily Deepseek(bool v3) {
  TokenizerFamily f;
  f.name = v3 ? "deepseek-v3" : "deepseek-v2";
  f.pattern = kLlama3Pattern;
  f.special_tokens = {"<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>",
                      "<｜User｜>", "<｜Assistant｜>"};
  f.bos_token = "<｜begin▁of▁sentence｜>";
  f.eos_token = "<｜end▁of▁sentence｜>";
  f.pad_token = "<｜▁pad▁｜>";
  f.stop_tokens = {"<｜end▁of▁sentence｜>"};
  f.add_bos = true;
  f.chat_template = v3 ? kDeepseekV3Template : kDeepseekV2Template;
  return f;
}

TokenizerFamily Mixtral() {
  TokenizerFamily f;
  f.name = "mixtral";
  f.pattern = kLlama3Pattern;
  f.special_tokens = {"<unk>", "<s>", "</s>", "[INST]", "[/INST]"};
  f.bos_token = "<s>";
  f.eos_token = "</s>";
  f.pad_token = "<unk>";
  f.stop_tokens = {"</s>"};
  f.add_bos = true;
  f.chat_template = kMixtralTemplate;
  return f;
}

}  // namespace

const TokenizerFamily& FamilyFor(model::Architecture arch) {
  static const TokenizerFamily llama3 = Llama3();
  static const TokenizerFamily qwen = Qwen();
  static const TokenizerFamily deepseek_v3 = Deepseek(true);
  static const TokenizerFamily deepseek_v2 = Deepseek(false);
  static const TokenizerFamily mixtral = Mixtral();
  switch (arch) {
    case model::Architecture::kLlama:
      return llama3;
    case model::Architecture::kMixtral:
      return mixtral;
    case model::Architecture::kQwen2Moe:
    case model::Architecture::kQwen3Moe:
      return qwen;
    case model::Architecture::kDeepseekV2:
      return deepseek_v2;
    case model::Architecture::kDeepseekV3:
      return deepseek_v3;
  }
  return llama3;
}

}  // namespace expertmesh::make_model
