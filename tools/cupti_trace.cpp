// A kernel-timeline tracer for any CUDA program, loaded by the driver through CUPTI's injection
// hook: the GPU machine has no Nsight Systems, and ncu serialises kernels, which hides exactly
// what a decode step's timeline is about (PDL overlap, the side stream, idle gaps).
//
//   CUDA_INJECTION64_PATH=libgs_cupti_trace.so GS_TRACE_OUT=trace.csv gemmaserve bench ...
//
// It records every kernel (CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, which keeps kernels concurrent;
// kernels of a CUDA graph come one record a node) and at exit writes one CSV row a kernel:
//   start_ns,end_ns,stream,correlation,graph_id,graph_node,grid,block,name
// Kernels of one cudaGraphLaunch share the correlation id; scripts/gpu/trace_report.py turns
// the rows into the median timeline of a decode step. GS_TRACE_MAX caps the rows kept (default
// 4,000,000, about 100 MB of memory) so a long benchmark cannot exhaust the host.
#include <cupti.h>
#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

struct KernelRow {
  uint64_t start, end;
  uint32_t stream, correlation, graph_id;
  uint64_t graph_node;
  int32_t grid, block;
  uint32_t name;  // index into Trace::names
};

struct Trace {
  std::mutex mu;
  std::vector<KernelRow> rows;
  std::vector<std::string> names;
  std::unordered_map<const char*, uint32_t> name_ids;  // CUPTI keeps a name's pointer stable
  size_t max_rows = 4000000;
  size_t dropped = 0;
};

Trace& Get() {
  static Trace* trace = new Trace;  // never destroyed: the exit handler runs after statics
  return *trace;
}

constexpr size_t kBufferBytes = 8u << 20;

std::string Demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                            std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(name);
}

void CUPTIAPI BufferRequested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;
}

void Keep(const CUpti_ActivityKernel10& k) {
  Trace& t = Get();
  std::lock_guard<std::mutex> lock(t.mu);
  if (t.rows.size() >= t.max_rows) {
    ++t.dropped;
    return;
  }
  auto [it, fresh] = t.name_ids.try_emplace(k.name, static_cast<uint32_t>(t.names.size()));
  if (fresh) t.names.push_back(Demangle(k.name ? k.name : "?"));
  t.rows.push_back({k.start, k.end, k.streamId, k.correlationId, k.graphId, k.graphNodeId,
                    k.gridX * k.gridY * k.gridZ, k.blockX * k.blockY * k.blockZ, it->second});
}

void CUPTIAPI BufferCompleted(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* record = nullptr;
  while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
    if (record->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) {
      Keep(*reinterpret_cast<const CUpti_ActivityKernel10*>(record));
    }
  }
  std::free(buffer);
}

// Quotes a kernel name for CSV (template arguments hold commas).
std::string Quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

void WriteAtExit() {
  cuptiActivityFlushAll(1);
  Trace& t = Get();
  std::lock_guard<std::mutex> lock(t.mu);
  const char* path = std::getenv("GS_TRACE_OUT");
  if (!path) path = "gs_trace.csv";
  FILE* f = std::fopen(path, "w");
  if (!f) {
    std::fprintf(stderr, "gs_cupti_trace: cannot write %s\n", path);
    return;
  }
  std::fprintf(f, "start_ns,end_ns,stream,correlation,graph_id,graph_node,grid,block,name\n");
  for (const KernelRow& r : t.rows) {
    std::fprintf(f, "%llu,%llu,%u,%u,%u,%llu,%d,%d,%s\n",
                 static_cast<unsigned long long>(r.start), static_cast<unsigned long long>(r.end),
                 r.stream, r.correlation, r.graph_id,
                 static_cast<unsigned long long>(r.graph_node), r.grid, r.block,
                 Quoted(t.names[r.name]).c_str());
  }
  std::fclose(f);
  std::fprintf(stderr, "gs_cupti_trace: %zu kernels written to %s (%zu past GS_TRACE_MAX dropped)\n",
               t.rows.size(), path, t.dropped);
}

bool Check(CUptiResult r, const char* what) {
  if (r == CUPTI_SUCCESS) return true;
  const char* msg = nullptr;
  cuptiGetResultString(r, &msg);
  std::fprintf(stderr, "gs_cupti_trace: %s failed: %s\n", what, msg ? msg : "?");
  return false;
}

}  // namespace

// Called by the CUDA driver when CUDA_INJECTION64_PATH names this library.
extern "C" int InitializeInjection() {
  if (const char* max = std::getenv("GS_TRACE_MAX")) Get().max_rows = std::strtoull(max, nullptr, 10);
  if (!Check(cuptiActivityRegisterCallbacks(BufferRequested, BufferCompleted),
             "cuptiActivityRegisterCallbacks") ||
      !Check(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL),
             "cuptiActivityEnable(CONCURRENT_KERNEL)")) {
    return 0;
  }
  std::atexit(WriteAtExit);
  return 1;
}
