// Noticing that the client of a non-streaming request went away while its answer is generated.
//
// cpp-httplib 0.11 (Debian's) hands a handler only the parsed Request, not the connection, and
// says nothing when the peer closes; a streamed answer finds out by its failed writes, a
// non-streaming one writes nothing until the end. So the handler finds its own socket: the one
// descriptor of this process whose local and peer addresses are the Request's (local_addr:
// local_port, remote_addr:remote_port), and then asks the kernel whether the peer has closed it
// (an orderly FIN or a reset). The descriptor stays this connection's for as long as the handler
// runs, since httplib closes it only after the handler returns.
//
// A client that half-closes its side after sending the request (shutdown(SHUT_WR)) reads as gone,
// as it does for uvicorn/vLLM.
#pragma once

#include <string>

namespace gs::server {

class ClientSocket {
 public:
  ClientSocket(std::string local_addr, int local_port, std::string remote_addr, int remote_port)
      : local_addr_(std::move(local_addr)),
        remote_addr_(std::move(remote_addr)),
        local_port_(local_port),
        remote_port_(remote_port) {}

  // True once the peer has closed or reset the connection. The first call looks the socket up
  // (a scan of /proc/self/fd); if it cannot be found, the answer is always false.
  bool PeerClosed();

 private:
  int Find() const;

  std::string local_addr_, remote_addr_;
  int local_port_, remote_port_;
  int fd_ = -1;
  bool searched_ = false;
};

// Whether the peer of connected socket `fd` has closed or reset it (no blocking).
bool SocketPeerClosed(int fd);

}  // namespace gs::server
