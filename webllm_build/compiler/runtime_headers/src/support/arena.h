// src/support/arena.h -- written for webllm_build.
//
// Stands in for the header of the same name that the apache-tvm wheel's
// runtime sources include but do not ship.  A bump ("arena") allocator:
// many small allocations carved out of large pages, released all at once.
// The RPC endpoint uses it for per-packet scratch (argument arrays, DLTensor
// headers, shapes) and recycles it after each packet.
//
// Interface used by the runtime:
//   support::Arena                      = GenericArena<SimplePageAllocator>
//   arena.allocate_<T>(count) -> T*     (uninitialised storage)
//   arena.make<T>(args...)    -> T*     (placement-constructed)
//   arena.RecycleAll()                  (keep pages, forget contents)
//   support::ArenaPageHeader {next, size, offset}
// minrpc_server.h supplies its own page allocator with the same
// allocate(min_size)/deallocate(page) shape and a kPageAlign constant, and
// initialises header->size / header->offset itself, so those fields and
// that contract are part of the interface.
#ifndef TVM_SUPPORT_ARENA_H_
#define TVM_SUPPORT_ARENA_H_

#ifndef TVM_ARENA_HAS_DESTRUCTOR
#define TVM_ARENA_HAS_DESTRUCTOR 1
#endif

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace tvm {
namespace support {

/*! \brief Header at the start of every arena page. */
struct ArenaPageHeader {
  /*! \brief next page in whichever list the page is on. */
  ArenaPageHeader* next;
  /*! \brief total bytes of the page, header included. */
  size_t size;
  /*! \brief first free byte, counted from the start of the page. */
  size_t offset;
};

/*!
 * \brief Arena over pages obtained from PageAllocator.
 *
 * PageAllocator must provide
 *   ArenaPageHeader* allocate(size_t min_size);  // sets size and offset
 *   void deallocate(ArenaPageHeader* page);
 *   static constexpr kPageAlign;                // page base alignment
 *
 * Note: this part deliberately avoids plain operator new / malloc so it can
 * also serve bare-metal page allocators (minrpc).
 */
template <typename PageAllocator>
class GenericArena {
 public:
  explicit GenericArena(PageAllocator alloc = PageAllocator()) : alloc_(alloc) {
    // Always keep one page so RecycleAll has somewhere to reset to.
    head_ = alloc_.allocate(1);
    head_->next = nullptr;
  }

  GenericArena(const GenericArena&) = delete;
  GenericArena& operator=(const GenericArena&) = delete;

#if TVM_ARENA_HAS_DESTRUCTOR
  ~GenericArena() { FreeAll(); }
#endif

  /*! \brief Return every page (in use or cached) to the page allocator. */
  void FreeAll() {
    FreeList(&head_);
    FreeList(&free_list_);
  }

  /*!
   * \brief Invalidate all allocations but keep the pages: the newest page
   *  stays as the current one, the others go to the free list for reuse.
   */
  void RecycleAll() {
    if (head_ == nullptr) return;
    ArenaPageHeader* rest = head_->next;
    while (rest != nullptr) {
      ArenaPageHeader* next = rest->next;
      rest->next = free_list_;
      free_list_ = rest;
      rest = next;
    }
    head_->next = nullptr;
    head_->offset = sizeof(ArenaPageHeader);
  }

  /*!
   * \brief Uninitialised storage for count objects of type T.
   */
  template <typename T>
  T* allocate_(int count = 1) {
    static_assert(PageAllocator::kPageAlign % alignof(T) == 0,
                  "type alignment exceeds the arena page alignment");
    size_t n = count > 0 ? static_cast<size_t>(count) : 0;
    return static_cast<T*>(Alloc(sizeof(T) * n, alignof(T)));
  }

  /*!
   * \brief Construct a T in arena storage.
   * \note The destructor is never run; T should be trivially destructible
   *  or only own memory from this same arena.
   */
  template <typename T, typename... Args>
  T* make(Args&&... args) {
    T* ptr = allocate_<T>();
    new (ptr) T(std::forward<Args>(args)...);
    return ptr;
  }

 private:
  static size_t AlignUp(size_t value, size_t align) { return (value + align - 1) / align * align; }

  void* Alloc(size_t size, size_t align) {
    // head_ is only null after FreeAll(); then fall through to a new page.
    if (head_ != nullptr) {
      size_t offset = AlignUp(head_->offset, align);
      if (offset + size <= head_->size) {
        head_->offset = offset + size;
        return reinterpret_cast<char*>(head_) + offset;
      }
    }
    // Current page is full: take a cached page if the first one is big
    // enough, otherwise ask the allocator for a page of sufficient size.
    size_t offset = AlignUp(sizeof(ArenaPageHeader), align);
    ArenaPageHeader* page;
    if (free_list_ != nullptr && offset + size <= free_list_->size) {
      page = free_list_;
      free_list_ = free_list_->next;
    } else {
      page = alloc_.allocate(offset + size);
    }
    page->next = head_;
    page->offset = offset + size;
    head_ = page;
    return reinterpret_cast<char*>(page) + offset;
  }

  void FreeList(ArenaPageHeader** list) {
    while (*list != nullptr) {
      ArenaPageHeader* page = *list;
      *list = page->next;
      alloc_.deallocate(page);
    }
  }

  PageAllocator alloc_;
  /*! \brief page currently allocated from; older in-use pages follow ->next. */
  ArenaPageHeader* head_{nullptr};
  /*! \brief recycled pages available for reuse. */
  ArenaPageHeader* free_list_{nullptr};
};

/*! \brief Page allocator on top of aligned operator new/delete. */
class SimplePageAllocator {
 public:
  static constexpr size_t kPageSize = 16 << 10;
  static constexpr size_t kPageAlign = 1024;

  /*! \brief Allocate a page (a whole number of kPageSize) of at least min_size. */
  ArenaPageHeader* allocate(size_t min_size) {
    size_t npages = (min_size + kPageSize - 1) / kPageSize;
    if (npages == 0) npages = 1;
    size_t bytes = npages * kPageSize;
    void* mem = ::operator new(bytes, std::align_val_t(kPageAlign));
    ArenaPageHeader* page = static_cast<ArenaPageHeader*>(mem);
    page->next = nullptr;
    page->size = bytes;
    page->offset = sizeof(ArenaPageHeader);
    return page;
  }

  void deallocate(ArenaPageHeader* page) {
    ::operator delete(static_cast<void*>(page), std::align_val_t(kPageAlign));
  }
};

using Arena = GenericArena<SimplePageAllocator>;

/*! \brief Singly linked list node, convenient to allocate from an arena. */
template <typename T>
struct LinkNode {
  T value;
  LinkNode<T>* next{nullptr};
};

/*! \brief Append-only singly linked list of arena nodes. */
template <typename T>
struct LinkedList {
  LinkNode<T>* head{nullptr};
  LinkNode<T>* tail{nullptr};

  void Push(LinkNode<T>* node) {
    node->next = nullptr;
    if (tail == nullptr) {
      head = tail = node;
    } else {
      tail->next = node;
      tail = node;
    }
  }
};

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_ARENA_H_
