# Boost.Python 1.74 for Python 3.12, built by tools/device/device_build.sh (Debian 12 ships it only for 3.11).
# Installed as <prefix>/lib/cmake/boost_python-1.74.0/; Caffe's find_package(Boost COMPONENTS python312)
# reaches it through Debian's BoostConfig when boost_python_DIR points here. Mirrors Debian's generated
# config: target Boost::python, linked with Boost::headers.
if(TARGET Boost::python)
  return()
endif()

if(Boost_PYTHON_VERSION)
  string(REGEX REPLACE "([0-9]+[.][0-9]+)([.].*)?" "\\1" _mfuse_pyver "${Boost_PYTHON_VERSION}")
  if(NOT _mfuse_pyver VERSION_EQUAL "3.12")
    set(boost_python_FOUND 0)
    set(boost_python_NOT_FOUND_MESSAGE
        "${CMAKE_CURRENT_LIST_DIR} holds Boost.Python for Python 3.12, not ${Boost_PYTHON_VERSION}")
    return()
  endif()
endif()
set(Boost_PYTHON_VERSION "3.12")

get_filename_component(_mfuse_bp_libdir "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
add_library(Boost::python SHARED IMPORTED)
set_target_properties(Boost::python PROPERTIES
  IMPORTED_LOCATION "${_mfuse_bp_libdir}/libboost_python312.so.1.74.0"
  INTERFACE_COMPILE_DEFINITIONS "BOOST_ALL_NO_LIB;BOOST_PYTHON_DYN_LINK")
unset(_mfuse_bp_libdir)

find_package(boost_headers 1.74.0 EXACT CONFIG REQUIRED)
set_property(TARGET Boost::python APPEND PROPERTY INTERFACE_LINK_LIBRARIES Boost::headers)
