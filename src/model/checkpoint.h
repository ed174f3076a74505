// Where a checkpoint lives: `--model` is a directory, or a Hugging Face id (ORG/NAME) found in
// the local HF cache ($HF_HOME/hub or ~/.cache/huggingface/hub/models--ORG--NAME/snapshots/REV).
#pragma once

#include <string>

#include "util/status.h"

namespace gs {

// Returns a directory that contains config.json. An id with several cached snapshots resolves
// to the one refs/main names, else the newest. The error says where it looked.
Expected<std::string> ResolveModelPath(const std::string& model);

}  // namespace gs
