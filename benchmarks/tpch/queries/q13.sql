-- Q13 (customer distribution): LEFT OUTER JOIN inside a FROM subquery.
-- Rewrite: party-qualified table names only.
select c_count, count(*) as custdist
from (
    select c_custkey, count(o_orderkey) as c_count
    from retail.customer left outer join retail.orders on c_custkey = o_custkey and o_comment not like '%special%requests%'
    group by c_custkey
) as c_orders
group by c_count
order by custdist desc, c_count desc;
