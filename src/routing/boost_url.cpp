// The one translation unit that compiles Boost.URL (header-only use: Debian's libboost1.81-dev
// ships its headers, the compiled library is a package of its own).
#include <boost/url/src.hpp>
