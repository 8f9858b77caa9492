"""Placeholder while the page is being built."""

import streamlit as st

st.title("upsample_pooling")
st.info("This page is being built.")
