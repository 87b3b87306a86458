// src/support/base64.h -- written for webllm_build.
//
// Stands in for the header of the same name that the apache-tvm wheel's
// runtime sources include but do not ship.  Streams that encode to / decode
// from standard base64 (RFC 4648 alphabet, '=' padding, no line breaks).
// tensor.cc uses them for the JSON form of tensors ("__data_to_json__" /
// "__data_from_json__"): SaveDLTensor -> Base64OutStream -> string, and back.
//
// API kept from the original:
//   Base64OutStream(Stream* sink); Write(...); Finish(int endch = EOF)
//   Base64InStream(Stream* source); InitPosition(); IsEOF(); Read(...)
// A base64 run ends at end of input or at the first whitespace character.
#ifndef TVM_SUPPORT_BASE64_H_
#define TVM_SUPPORT_BASE64_H_

#include <tvm/ffi/error.h>
#include <tvm/support/io.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace tvm {
namespace support {

namespace base64 {

inline const char* EncodeAlphabet() {
  return "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}

// Value of a base64 digit, or -1 if ch is not one.
inline int DecodeDigit(int ch) {
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == '+') return 62;
  if (ch == '/') return 63;
  return -1;
}

// Locale-independent whitespace test (std::isspace is locale dependent and
// undefined for negative chars).
inline bool IsSpace(int ch) {
  return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

}  // namespace base64

/*!
 * \brief Pulls characters from an underlying stream in chunks, so decoding
 *  does not cost one virtual Read per character.
 */
class StreamBufferReader {
 public:
  explicit StreamBufferReader(size_t buffer_size) : buffer_(buffer_size, '\0') {}

  void set_stream(Stream* stream) {
    stream_ = stream;
    len_ = pos_ = 0;
    at_end_ = false;
  }

  /*! \return next byte as 0..255, or EOF when the source is exhausted. */
  int GetChar() {
    if (pos_ == len_) {
      if (at_end_) return EOF;
      len_ = stream_->Read(&buffer_[0], buffer_.size());
      pos_ = 0;
      if (len_ == 0) {
        at_end_ = true;
        return EOF;
      }
    }
    return static_cast<unsigned char>(buffer_[pos_++]);
  }

  bool AtEnd() const { return at_end_; }

 private:
  Stream* stream_{nullptr};
  std::string buffer_;
  size_t len_{0};
  size_t pos_{0};
  bool at_end_{false};
};

/*!
 * \brief Decodes base64 text read from another stream.
 * \note Call InitPosition() once before the first Read (skips leading
 *  whitespace).  Read returns fewer bytes than requested when the base64
 *  run ends.
 */
class Base64InStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;

  explicit Base64InStream(Stream* source) : reader_(256) { reader_.set_stream(source); }

  void InitPosition() {
    do {
      cur_ = reader_.GetChar();
    } while (base64::IsSpace(cur_));
  }

  /*! \return whether the decoded data is exhausted. */
  bool IsEOF() const { return pending_len_ == pending_pos_ && Terminated(cur_); }

  size_t Read(void* ptr, size_t size) final {
    unsigned char* out = static_cast<unsigned char*>(ptr);
    size_t produced = 0;
    while (produced < size) {
      if (pending_pos_ == pending_len_ && !DecodeQuantum()) break;
      size_t take = pending_len_ - pending_pos_;
      if (take > size - produced) take = size - produced;
      for (size_t i = 0; i < take; ++i) out[produced + i] = pending_[pending_pos_ + i];
      pending_pos_ += take;
      produced += take;
    }
    return produced;
  }

  size_t Write(const void*, size_t) final {
    TVM_FFI_THROW(InternalError) << "Base64InStream is read-only";
    return 0;
  }

 private:
  static bool Terminated(int ch) { return ch == EOF || base64::IsSpace(ch); }

  // Next character that must belong to the current 4-char group.
  int NextInGroup() {
    int ch = reader_.GetChar();
    TVM_FFI_ICHECK(!Terminated(ch)) << "invalid base64 format: truncated group";
    return ch;
  }

  static int Digit(int ch) {
    int v = base64::DecodeDigit(ch);
    TVM_FFI_ICHECK(v >= 0) << "invalid base64 format: bad character " << ch;
    return v;
  }

  // Decodes one 4-character group (whose first character is cur_) into
  // pending_.  Returns false when no more data is available.
  bool DecodeQuantum() {
    if (finished_ || Terminated(cur_)) return false;
    int c0 = cur_;
    int c1 = NextInGroup();
    int c2 = NextInGroup();
    int c3 = NextInGroup();
    uint32_t v = (static_cast<uint32_t>(Digit(c0)) << 18) | (static_cast<uint32_t>(Digit(c1)) << 12);
    pending_pos_ = 0;
    if (c2 == '=') {
      // "xx==": one byte, and the run ends here.
      TVM_FFI_ICHECK(c3 == '=') << "invalid base64 format: bad padding";
      pending_[0] = static_cast<unsigned char>(v >> 16);
      pending_len_ = 1;
      finished_ = true;
    } else if (c3 == '=') {
      // "xxx=": two bytes, and the run ends here.
      v |= static_cast<uint32_t>(Digit(c2)) << 6;
      pending_[0] = static_cast<unsigned char>(v >> 16);
      pending_[1] = static_cast<unsigned char>(v >> 8);
      pending_len_ = 2;
      finished_ = true;
    } else {
      v |= (static_cast<uint32_t>(Digit(c2)) << 6) | static_cast<uint32_t>(Digit(c3));
      pending_[0] = static_cast<unsigned char>(v >> 16);
      pending_[1] = static_cast<unsigned char>(v >> 8);
      pending_[2] = static_cast<unsigned char>(v);
      pending_len_ = 3;
    }
    // Advance to the first character of the next group (or the terminator).
    cur_ = reader_.GetChar();
    if (finished_) {
      TVM_FFI_ICHECK(Terminated(cur_)) << "invalid base64 format: data after padding";
    }
    return true;
  }

  StreamBufferReader reader_;
  int cur_{EOF};        // first character of the next undecoded group
  bool finished_{false};  // padding seen: no further groups in this run
  unsigned char pending_[3];
  size_t pending_len_{0};
  size_t pending_pos_{0};
};

/*!
 * \brief Encodes everything written to it as base64 into another stream.
 * \note Finish() must be called to flush the trailing partial group (with
 *  '=' padding) and any buffered output.
 */
class Base64OutStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;

  explicit Base64OutStream(Stream* sink) : sink_(sink) {}

  size_t Write(const void* ptr, size_t size) final {
    const unsigned char* in = static_cast<const unsigned char*>(ptr);
    for (size_t i = 0; i < size; ++i) {
      group_[group_len_++] = in[i];
      if (group_len_ == 3) EmitGroup();
    }
    return size;
  }

  size_t Read(void*, size_t) final {
    TVM_FFI_THROW(InternalError) << "Base64OutStream is write-only";
    return 0;
  }

  /*!
   * \brief Flush the pending partial group with padding, then append endch
   *  unless it is EOF, then push everything to the sink.
   */
  void Finish(int endch = EOF) {
    if (group_len_ != 0) EmitGroup();
    if (endch != EOF) Put(static_cast<char>(endch));
    Flush();
  }

 private:
  static constexpr size_t kFlushThreshold = 256;

  // Encode the 1..3 bytes in group_ into four characters.
  void EmitGroup() {
    const char* alpha = base64::EncodeAlphabet();
    uint32_t v = static_cast<uint32_t>(group_[0]) << 16;
    if (group_len_ > 1) v |= static_cast<uint32_t>(group_[1]) << 8;
    if (group_len_ > 2) v |= static_cast<uint32_t>(group_[2]);
    Put(alpha[(v >> 18) & 0x3F]);
    Put(alpha[(v >> 12) & 0x3F]);
    Put(group_len_ > 1 ? alpha[(v >> 6) & 0x3F] : '=');
    Put(group_len_ > 2 ? alpha[v & 0x3F] : '=');
    group_len_ = 0;
  }

  void Put(char ch) {
    out_.push_back(ch);
    if (out_.size() >= kFlushThreshold) Flush();
  }

  void Flush() {
    if (!out_.empty()) {
      sink_->Write(static_cast<const void*>(out_.data()), out_.size());
      out_.clear();
    }
  }

  Stream* sink_;
  unsigned char group_[3];
  size_t group_len_{0};
  std::string out_;
};

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_BASE64_H_
