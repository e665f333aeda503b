-- Q5 (local supplier volume): retail (customer, orders, nation, region) x logistics (lineitem) x supply (supplier).
-- Rewrites: party-qualified table names; nation and region are retail's copies (public tables, identical at
-- every party); s_nationkey = n_nationkey is written c_nationkey = n_nationkey, equivalent given
-- c_nationkey = s_nationkey, so the nation/region join and the ASIA filter run in retail's DuckDB.
select n_name, sum(l_extendedprice * (1 - l_discount)) as revenue
from retail.customer, retail.orders, logistics.lineitem, supply.supplier, retail.nation, retail.region
where c_custkey = o_custkey and l_orderkey = o_orderkey and l_suppkey = s_suppkey
  and c_nationkey = s_nationkey and c_nationkey = n_nationkey and n_regionkey = r_regionkey
  and r_name = 'ASIA' and o_orderdate >= date '1994-01-01' and o_orderdate < date '1994-01-01' + interval '1' year
group by n_name
order by revenue desc;
