# Prepares the patched Caffe 1.0 source tree of the mfuse fork (run in script mode: cmake -P).
#
# Steps, each failing with one line that names the cause:
#   1. obtain Debian's caffe 1.0.0+git20180821.99bd997-8 source package (apt-get source with a private
#      configuration that adds a bullseye deb-src entry; the system's sources are never touched), or take
#      the unpacked tree given as CAFFE_SOURCE_DIR;
#   2. verify the tarballs against the sums committed in patches/upstream.sha256;
#   3. unpack, apply Debian's patch series, then ours (patches/series), then copy the overlay (layers/)
#      into the tree and apply the caffe.proto patch.
#
# Inputs (-D...): MFUSE_ROOT (the repo), SOURCE_DIR (the tree to create), DOWNLOAD_DIR (tarball cache),
# CAFFE_SOURCE_DIR (optional: an unpacked orig tarball with Debian's debian/ folder beside src/).

foreach(var MFUSE_ROOT SOURCE_DIR DOWNLOAD_DIR)
  if(NOT ${var})
    message(FATAL_ERROR "mfuse: PrepareCaffeSource.cmake needs -D${var}=...")
  endif()
endforeach()

set(_pkg_version "1.0.0+git20180821.99bd997-8")
set(_orig "caffe_1.0.0+git20180821.99bd997.orig.tar.gz")
set(_debian "caffe_${_pkg_version}.debian.tar.xz")
set(_sums_file "${MFUSE_ROOT}/patches/upstream.sha256")

function(mfuse_fail what)
  message(FATAL_ERROR "mfuse: ${what}")
endfunction()

function(mfuse_expected_sum name out)
  file(STRINGS "${_sums_file}" lines)
  foreach(line ${lines})
    string(REGEX MATCH "^([0-9a-f]+)  (.+)$" _ "${line}")
    if(CMAKE_MATCH_2 STREQUAL name)
      set(${out} "${CMAKE_MATCH_1}" PARENT_SCOPE)
      return()
    endif()
  endforeach()
  mfuse_fail("${_sums_file} has no sum for ${name}")
endfunction()

function(mfuse_download_sources)
  find_program(APT_GET apt-get)
  if(NOT APT_GET)
    mfuse_fail("apt-get not found: download ${_orig} and ${_debian} by hand into ${DOWNLOAD_DIR}, or pass CAFFE_SOURCE_DIR")
  endif()
  set(apt_dir "${DOWNLOAD_DIR}/apt")
  file(MAKE_DIRECTORY "${apt_dir}/lists/partial")
  file(WRITE "${apt_dir}/sources.list"
    "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bullseye main\n")
  set(apt_opts
    -o "Dir::Etc::SourceList=${apt_dir}/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=${apt_dir}/lists" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
  execute_process(COMMAND ${APT_GET} ${apt_opts} -q update
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    mfuse_fail("apt-get update of the private bullseye deb-src list failed (network?): ${err}")
  endif()
  execute_process(COMMAND ${APT_GET} ${apt_opts} -q source --download-only caffe=${_pkg_version}
    WORKING_DIRECTORY "${DOWNLOAD_DIR}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    mfuse_fail("apt-get source caffe=${_pkg_version} failed: ${err}")
  endif()
endfunction()

function(mfuse_verified_tarballs)
  file(MAKE_DIRECTORY "${DOWNLOAD_DIR}")
  if(NOT EXISTS "${DOWNLOAD_DIR}/${_orig}" OR NOT EXISTS "${DOWNLOAD_DIR}/${_debian}")
    message(STATUS "mfuse: downloading Debian's caffe ${_pkg_version} source package")
    mfuse_download_sources()
  endif()
  foreach(name ${_orig} ${_debian})
    mfuse_expected_sum(${name} expected)
    file(SHA256 "${DOWNLOAD_DIR}/${name}" actual)
    if(NOT actual STREQUAL expected)
      file(REMOVE "${DOWNLOAD_DIR}/${name}")
      mfuse_fail("checksum mismatch for ${DOWNLOAD_DIR}/${name}: sha256 ${actual}, expected ${expected} "
                 "(patches/upstream.sha256); the file was deleted, run setup again to re-download")
    endif()
  endforeach()
  message(STATUS "mfuse: upstream tarballs verified against patches/upstream.sha256")
endfunction()

function(mfuse_apply_patch patch_file)
  execute_process(COMMAND patch -p1 --forward --batch --quiet -i "${patch_file}"
    WORKING_DIRECTORY "${SOURCE_DIR}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    mfuse_fail("patch ${patch_file} does not apply to the Caffe tree: ${out}${err}")
  endif()
endfunction()

function(mfuse_apply_series series_file patch_dir)
  file(STRINGS "${series_file}" names)
  foreach(name ${names})
    string(STRIP "${name}" name)
    if(name STREQUAL "" OR name MATCHES "^#")
      continue()
    endif()
    mfuse_apply_patch("${patch_dir}/${name}")
  endforeach()
endfunction()

find_program(PATCH_PROGRAM patch)
if(NOT PATCH_PROGRAM)
  mfuse_fail("the 'patch' program is missing: apt-get install patch")
endif()

file(REMOVE_RECURSE "${SOURCE_DIR}")
file(MAKE_DIRECTORY "${SOURCE_DIR}")
if(CAFFE_SOURCE_DIR)
  if(NOT EXISTS "${CAFFE_SOURCE_DIR}/src/caffe/net.cpp" OR NOT EXISTS "${CAFFE_SOURCE_DIR}/debian/patches/series")
    mfuse_fail("CAFFE_SOURCE_DIR=${CAFFE_SOURCE_DIR} is not an unpacked ${_orig} with Debian's debian/ folder "
               "(needs src/caffe/net.cpp and debian/patches/series)")
  endif()
  message(STATUS "mfuse: copying the Caffe tree from CAFFE_SOURCE_DIR=${CAFFE_SOURCE_DIR}")
  file(COPY "${CAFFE_SOURCE_DIR}/" DESTINATION "${SOURCE_DIR}")
else()
  mfuse_verified_tarballs()
  file(ARCHIVE_EXTRACT INPUT "${DOWNLOAD_DIR}/${_orig}" DESTINATION "${SOURCE_DIR}")
  file(ARCHIVE_EXTRACT INPUT "${DOWNLOAD_DIR}/${_debian}" DESTINATION "${SOURCE_DIR}")
endif()

mfuse_apply_series("${SOURCE_DIR}/debian/patches/series" "${SOURCE_DIR}/debian/patches")
message(STATUS "mfuse: Debian's patch series applied")
mfuse_apply_series("${MFUSE_ROOT}/patches/series" "${MFUSE_ROOT}/patches")
message(STATUS "mfuse: mfuse patches applied (patches/series)")

# The overlay mirrors Caffe's tree; the proto patch is applied, the other files are copied in.
set(_overlay "${MFUSE_ROOT}/layers")
file(GLOB_RECURSE _overlay_files RELATIVE "${_overlay}" "${_overlay}/include/*" "${_overlay}/src/*")
foreach(rel ${_overlay_files})
  if(rel MATCHES "\\.patch$")
    continue()
  endif()
  get_filename_component(dir "${SOURCE_DIR}/${rel}" DIRECTORY)
  file(COPY "${_overlay}/${rel}" DESTINATION "${dir}")
endforeach()
file(GLOB_RECURSE _overlay_patches "${_overlay}/*.patch")
list(SORT _overlay_patches)
foreach(p ${_overlay_patches})
  mfuse_apply_patch("${p}")
endforeach()
list(LENGTH _overlay_files _n_overlay)
message(STATUS "mfuse: overlay layers/ applied (${_n_overlay} files, proto patched)")
file(WRITE "${SOURCE_DIR}/.mfuse-prepared" "ok\n")
