# FindRevoxNccl.cmake — finds NCCL (nccl.h + libnccl) and its version. revox asks for 2.11
# or newer (`find_package(RevoxNccl 2.11)`): its NCCL communicator scales during the
# all-reduce with ncclRedOpCreatePreMulSum, new in 2.11.
#
# NCCL ships without a CMake package. It is looked for next to the CUDA toolkit first
# (CUDAToolkit_INCLUDE_DIRS / CUDAToolkit_LIBRARY_DIR, where NVIDIA's installers and the
# build machines put it), then in the usual system places; NCCL_ROOT or -DNCCL_ROOT=... adds
# a prefix to search.
#
# Result: RevoxNccl_FOUND, RevoxNccl_VERSION, RevoxNccl_INCLUDE_DIR, RevoxNccl_LIBRARY and the
# imported target RevoxNccl::RevoxNccl.
include(FindPackageHandleStandardArgs)

set(_revox_nccl_hints "")
if(DEFINED NCCL_ROOT)
  list(APPEND _revox_nccl_hints "${NCCL_ROOT}")
endif()
if(DEFINED ENV{NCCL_ROOT})
  list(APPEND _revox_nccl_hints "$ENV{NCCL_ROOT}")
endif()

find_path(RevoxNccl_INCLUDE_DIR nccl.h
  HINTS ${_revox_nccl_hints} ${CUDAToolkit_INCLUDE_DIRS}
  PATH_SUFFIXES include)
find_library(RevoxNccl_LIBRARY NAMES nccl
  HINTS ${_revox_nccl_hints} ${CUDAToolkit_LIBRARY_DIR}
  PATH_SUFFIXES lib lib64)
mark_as_advanced(RevoxNccl_INCLUDE_DIR RevoxNccl_LIBRARY)
unset(_revox_nccl_hints)

if(RevoxNccl_INCLUDE_DIR AND EXISTS "${RevoxNccl_INCLUDE_DIR}/nccl.h")
  file(STRINGS "${RevoxNccl_INCLUDE_DIR}/nccl.h" _revox_nccl_defines
       REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) +[0-9]+")
  foreach(part MAJOR MINOR PATCH)
    string(REGEX MATCH "NCCL_${part} +([0-9]+)" _ "${_revox_nccl_defines}")
    set(_revox_nccl_${part} "${CMAKE_MATCH_1}")
  endforeach()
  if(NOT _revox_nccl_MAJOR STREQUAL "")
    set(RevoxNccl_VERSION "${_revox_nccl_MAJOR}.${_revox_nccl_MINOR}.${_revox_nccl_PATCH}")
  endif()
  unset(_revox_nccl_defines)
  unset(_revox_nccl_MAJOR)
  unset(_revox_nccl_MINOR)
  unset(_revox_nccl_PATCH)
endif()

find_package_handle_standard_args(RevoxNccl
  REQUIRED_VARS RevoxNccl_LIBRARY RevoxNccl_INCLUDE_DIR
  VERSION_VAR RevoxNccl_VERSION)

if(RevoxNccl_FOUND AND NOT TARGET RevoxNccl::RevoxNccl)
  add_library(RevoxNccl::RevoxNccl UNKNOWN IMPORTED)
  set_target_properties(RevoxNccl::RevoxNccl PROPERTIES
    IMPORTED_LOCATION "${RevoxNccl_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${RevoxNccl_INCLUDE_DIR}")
endif()
