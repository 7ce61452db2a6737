//! Wire format of the phone book. (work in progress)
